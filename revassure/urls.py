"""The project's URLs. The one module of the core that imports the apps: wiring
them together is its job (settings name them too, in INSTALLED_APPS)."""

from django.contrib import admin
from django.urls import include, path

from backfill import views as backfill_views
from jobs import views as jobs_views
from observability import views as observability_views
from revassure import api, sso
from revassure.login_form import StaffAuthenticationForm

admin.site.site_header = "revassure"
admin.site.site_title = "revassure back office"
admin.site.index_title = "Ledger assurance"
# No public site behind the back office: no "View site" link (it led to a 404).
admin.site.site_url = None
admin.site.login_form = StaffAuthenticationForm

# Every 403 a person meets is a page that says why and where to go; the APIs keep JSON.
handler403 = "revassure.errors.permission_denied"
# Pages of our own for an address that names nothing and for our own failures.
handler404 = "revassure.errors.page_not_found"
handler500 = "revassure.errors.server_error"

urlpatterns = [
    path("healthz", api.healthz, name="healthz"),
    path("readyz", api.readyz, name="readyz"),
    path("metrics", observability_views.metrics, name="metrics"),
    path("api/openapi.json", api.openapi, name="openapi"),
    path("api/jobs/", include("jobs.urls")),
    path("api/events/firestore", jobs_views.firestore_event, name="events-firestore"),
    path("api/webhooks/paynow", backfill_views.paynow_webhook, name="webhook-paynow"),
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("sso/refused/", sso.refused, name="sso-refused"),
    path("admin/", admin.site.urls),
]
