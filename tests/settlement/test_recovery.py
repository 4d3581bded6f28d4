"""A settlement run whose worker died (SIGKILL: the run still running under its
lease, some chunks' rows stored) is handed back by the minute's sweep once the
lease lapses and matched again from the first row by another worker: the same
rows, counts and totals as a run inline, each row once. A run whose task was
lost before any worker took it is queued again; a live worker's run is left
alone; a worker taken for dead stores nothing more. (tests/hosts kills real
machines.)"""

from datetime import timedelta

import pytest
from django.utils import timezone

from revassure import dbclock, leases
from settlement import matching, reports, services, tasks
from settlement.models import RunStatus, SettlementRow, SettlementRun
from settlement.records import record

DEAD = "deadhost:4242"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Four rows a chunk: the 14-row statement is matched in four commits."""
    monkeypatch.setattr(matching, "CHUNK_ROWS", 4)


def findings(run: SettlementRun) -> dict:
    """What a run found, without what identifies it: each row's record in the
    order stored, the counts and the totals."""
    run.refresh_from_db()
    return {
        "rows": [record(row) for row in reports.rows_of(run)],
        "counts": {"rows": run.rows, **run.counts(), "malformed_rows": run.malformed_rows},
        "totals": run.totals,
        "period": (run.period_start, run.period_end),
    }


class Killed(BaseException):
    """The worker's machine dies here: nothing of the worker runs after it."""


@pytest.fixture
def died_mid_run(world, write_statement, every_outcome, ops, monkeypatch, django_capture_on_commit_callbacks):
    """A run an admin upload queued, whose worker died after storing two chunks."""
    path = write_statement(every_outcome)
    with django_capture_on_commit_callbacks() as queued:
        run = services.request_import(source="paynow.csv", path=str(path), actor=ops, trigger="admin")
    assert len(queued) == 1  # its task, run below by the worker that dies
    real_settle, settled = matching._settle, []

    def dies_on_the_third_chunk(*args, **kwargs):
        if len(settled) == 2:
            raise Killed
        settled.append(real_settle(*args, **kwargs))

    monkeypatch.setattr(matching, "_settle", dies_on_the_third_chunk)
    with pytest.raises(Killed):
        services.run_pending(run.pk, gateway=world)
    monkeypatch.setattr(matching, "_settle", real_settle)
    SettlementRun.objects.filter(pk=run.pk).update(worker=DEAD)
    run.refresh_from_db()
    assert (run.status, run.rows, SettlementRow.objects.filter(run=run).count()) == (RunStatus.RUNNING, 8, 8)
    return run


def test_a_run_whose_worker_died_is_matched_again_by_another_with_the_same_findings(
    world, died_mid_run, write_statement, every_outcome, django_capture_on_commit_callbacks
):
    # Its worker's lease lives: nothing to do.
    assert services.resume_abandoned() == {"handed_back": 0, "queued_again": 0, "failed": 0}

    SettlementRun.objects.filter(pk=died_mid_run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep() == {"handed_back": 1, "queued_again": 0, "failed": 0}  # matched here (sync)

    run = SettlementRun.objects.get(pk=died_mid_run.pk)
    assert (run.status, run.worker, run.attempts, run.lease_until) == (
        RunStatus.COMPLETED,
        leases.holder(),
        2,
        None,
    )
    stored = SettlementRow.objects.filter(run=run)
    assert stored.filter(line__isnull=False).count() == run.rows == 14  # each statement row once
    assert stored.count() == run.rows + run.missing_at_provider
    inline = services.reconcile_file(write_statement(every_outcome), gateway=world).run
    assert findings(run) == findings(inline)
    assert reports.verify(gateway=world) == (2, [])


def test_a_second_delivery_of_a_taken_run_does_nothing(world, died_mid_run):
    SettlementRun.objects.filter(pk=died_mid_run.pk).update(lease_until=dbclock.ahead(60))
    assert tasks.run_import(died_mid_run.pk) == RunStatus.RUNNING

    run = SettlementRun.objects.get(pk=died_mid_run.pk)
    assert (run.worker, run.attempts, run.rows) == (DEAD, 1, 8)


def test_a_worker_taken_for_dead_stores_nothing_more(world, died_mid_run, monkeypatch):
    # This worker was slow past its lease; the sweep handed the run back and another took it.
    SettlementRun.objects.filter(pk=died_mid_run.pk).update(status=RunStatus.PENDING, worker="")
    real_settle, settled = matching._settle, []

    def taken_over_after_a_chunk(*args, **kwargs):
        if len(settled) == 1:
            taken = SettlementRun.objects.filter(pk=died_mid_run.pk)
            taken.update(worker=DEAD, lease_until=dbclock.ahead(60))
        settled.append(real_settle(*args, **kwargs))

    monkeypatch.setattr(matching, "_settle", taken_over_after_a_chunk)
    run = services.run_pending(died_mid_run.pk, gateway=world)

    # It started over (its predecessor's 8 rows removed), stored one chunk, then stopped.
    assert (run.status, run.worker, run.error, run.rows) == (RunStatus.RUNNING, DEAD, "", 4)
    assert SettlementRow.objects.filter(run=run).count() == 4


def test_a_run_whose_task_was_lost_before_any_worker_took_it_is_queued_again(
    world, write_statement, every_outcome, ops, django_capture_on_commit_callbacks
):
    run = services.request_import(
        source="paynow.csv", path=str(write_statement(every_outcome)), actor=ops, trigger="admin"
    )  # its task went to a machine that died (never run here)
    assert services.resume_abandoned()["queued_again"] == 0  # queued just now: it may still come

    SettlementRun.objects.filter(pk=run.pk).update(queued_at=dbclock.ago(301))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.resume_abandoned() == {"handed_back": 0, "queued_again": 1, "failed": 0}

    run.refresh_from_db()
    assert (run.status, run.rows, run.attempts) == (RunStatus.COMPLETED, 14, 1)


def test_a_run_that_lost_its_worker_too_often_fails_saying_so(world, died_mid_run):
    SettlementRun.objects.filter(pk=died_mid_run.pk).update(
        attempts=services.MAX_ATTEMPTS, lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert services.resume_abandoned() == {"handed_back": 0, "queued_again": 0, "failed": 1}

    run = SettlementRun.objects.get(pk=died_mid_run.pk)
    assert run.status == RunStatus.FAILED
    lost = services.MAX_ATTEMPTS
    assert run.error == f"its worker was lost {lost} times (machines died or timed out matching it)"
