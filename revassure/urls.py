"""The project's URLs. The one module of the core that imports the apps: wiring
them together is its job (settings name them too, in INSTALLED_APPS)."""

from django.contrib import admin
from django.urls import include, path

from backfill import views as backfill_views
from revassure import api, sso

admin.site.site_header = "revassure"
admin.site.site_title = "revassure back office"
admin.site.index_title = "Ledger assurance"

urlpatterns = [
    path("healthz", api.healthz, name="healthz"),
    path("readyz", api.readyz, name="readyz"),
    path("api/openapi.json", api.openapi, name="openapi"),
    path("api/jobs/", include("jobs.urls")),
    path("api/webhooks/paynow", backfill_views.paynow_webhook, name="webhook-paynow"),
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("sso/refused/", sso.refused, name="sso-refused"),
    path("admin/", admin.site.urls),
]
