from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records that must not change (reports, audit trails, histories):
    viewable, never added, edited or deleted through the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
