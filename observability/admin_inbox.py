"""The "Waiting for me" page (`admin:inbox`): what waits for the viewer, kind by
kind, oldest first, each with how long it has waited and a link to act on it.
Anyone with a role has one; a staff account in no role gets the styled 403."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone

from observability import inbox
from observability.models import Inbox
from revassure.admin_base import AuthenticatedHttpRequest

TEMPLATE = "admin/observability/inbox.html"


@admin.register(Inbox)
class InboxAdmin(admin.ModelAdmin):
    def has_module_permission(self, request: HttpRequest) -> bool:
        return inbox.may_use(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Inbox | None = None) -> bool:
        return inbox.may_use(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Inbox | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Inbox | None = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        # The page is the model's only view; its changelist name makes the
        # admin index and menu link to it.
        view = self.admin_site.admin_view(self.inbox_view)
        return [path("", view, name="inbox"), path("", view, name="observability_inbox_changelist")]

    def inbox_view(self, request: AuthenticatedHttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied("nothing can wait for an account in no role: ask for one")
        now = timezone.now()
        sections = inbox.sections(request.user, now)
        rows = [(section, [(item, item.waited(now)) for item in section.items]) for section in sections]
        context = {
            **self.admin_site.each_context(request),
            "title": "Waiting for you",
            "sections": rows,
            "total": sum(section.count for section in sections),
        }
        return TemplateResponse(request, TEMPLATE, context)
