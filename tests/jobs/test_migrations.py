"""The Job table carries over from the revassure app to the jobs app, rows and all."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from jobs.models import Job

# Reconciliation pinned too: the old state's run model then matches the table
# (a run column added since would otherwise be missing from the insert below).
BEFORE_THE_MOVE = [("revassure", "0007_roles_for_backfill"), ("reconciliation", "0009_adjustment_settles")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


# serialized_rollback: the flush after this test then leaves the database empty for the
# next test's restore, instead of re-creating the feature flags (post_migrate) under it.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_jobs_stored_by_the_revassure_app_survive_the_move_to_the_jobs_app():
    old = migrate(BEFORE_THE_MOVE)
    run = old.get_model("reconciliation", "ReconciliationRun").objects.create(trigger="api")
    OldJob = old.get_model("revassure", "Job")
    kept = OldJob.objects.create(
        kind="reconcile", idempotency_key="daily-2026-11-25", caller="s@p.iam.gserviceaccount.com", run=run
    )

    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    job = Job.objects.get()
    assert (job.pk, job.kind, job.idempotency_key, job.run_id) == (
        kept.pk,
        "reconcile",
        kept.idempotency_key,
        run.pk,
    )
    assert Job._meta.db_table == "jobs_job"
    # New rows number on from the old ones.
    assert Job.objects.create(kind=Job.Kind.BACKFILL, idempotency_key="k", caller="s@p").pk > kept.pk
