from django.urls import path

from jobs import views

urlpatterns = [
    path("reconcile", views.reconcile_job, name="job-reconcile"),
    path("backfill", views.backfill_job, name="job-backfill"),
    path("settlement", views.settlement_job, name="job-settlement"),
    path("<int:job_id>", views.job_status, name="job-status"),
]
