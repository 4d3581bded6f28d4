from django.contrib import admin
from django.http import HttpResponse
from django.urls import path


def healthz(request):
    return HttpResponse("ok\n", content_type="text/plain")


admin.site.site_header = "revassure"
admin.site.site_title = "revassure back office"
admin.site.index_title = "Ledger assurance"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
