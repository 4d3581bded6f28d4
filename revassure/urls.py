from django.contrib import admin
from django.urls import include, path

from revassure import api, sso

admin.site.site_header = "revassure"
admin.site.site_title = "revassure back office"
admin.site.index_title = "Ledger assurance"

urlpatterns = [
    path("healthz", api.healthz, name="healthz"),
    path("readyz", api.readyz, name="readyz"),
    path("api/openapi.json", api.openapi, name="openapi"),
    path("api/jobs/reconcile", api.reconcile_job, name="job-reconcile"),
    path("api/jobs/backfill", api.backfill_job, name="job-backfill"),
    path("api/jobs/<int:job_id>", api.job_status, name="job-status"),
    path("api/webhooks/paynow", api.paynow_webhook, name="webhook-paynow"),
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("sso/refused/", sso.refused, name="sso-refused"),
    path("admin/", admin.site.urls),
]
