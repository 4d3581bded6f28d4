"""The cutover's snapshot and reconcile steps run in the workers from its page
(issue 25): confirming one asks the workers and shows its progress; the page
refreshes itself; when the worker ends, the step is recorded as the inline
path records it, or goes back to pending saying what went wrong. Tasks run in
process here (tests/conftest.py `sync_tasks`): the same functions a worker calls."""

import pytest
from django.urls import reverse

from cutover import background, services
from cutover.models import StepState
from reconciliation.models import RunTrigger
from snapshots.models import Snapshot, SnapshotStatus
from snapshots.services import snapshot_finished

pytestmark = pytest.mark.django_db


def page(cutover):
    return reverse("admin:cutover_cutover_change", args=[cutover.pk])


def step_url(cutover):
    return reverse("admin:cutover_step", args=[cutover.pk])


@pytest.fixture
def frozen(ops, clean_wallets):
    cutover = services.start(actor=ops, name="go-live", target="production")
    services.confirm(cutover, "freeze", actor=ops, gateway=clean_wallets, trigger=RunTrigger.ADMIN)
    return cutover


def test_the_snapshot_step_runs_in_the_workers_with_its_progress_on_the_page(
    client, ops, frozen, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    # The request commits and hands the snapshot to the workers; none has taken it yet.
    response = client.post(step_url(frozen), {"step": "snapshot", "note": "before the switch"})

    step = frozen.steps.get(key="snapshot")
    assert step.state == StepState.RUNNING and step.note == "before the switch"
    snapshot = Snapshot.objects.get(pk=step.evidence["snapshot_id"])
    assert snapshot.status == SnapshotStatus.PENDING and step.evidence["started_by"] == ops.username
    shown = client.get(response["Location"]).content.decode()
    assert "Step 2: Snapshot is running in the workers" in shown
    assert f"Snapshot {snapshot.pk}: pending, waiting for a worker to take it." in shown
    assert '<meta http-equiv="refresh" content="3">' in shown
    assert 'id="step-form"' not in shown  # nothing to confirm while it runs

    refused = client.post(step_url(frozen), {"step": "snapshot"}, follow=True).content.decode()
    assert "step 2 (Snapshot) is running in the workers" in refused
    assert Snapshot.objects.count() == 1

    # The worker takes it; its ending records the step at once.
    from snapshots import tasks

    with django_capture_on_commit_callbacks(execute=True):
        tasks.take(snapshot.pk)

    step.refresh_from_db()
    assert step.state == StepState.DONE and step.confirmed_by == ops
    assert step.evidence["snapshot_id"] == snapshot.pk and step.evidence["verification"] == "intact"
    assert step.evidence["wallets"] == 2
    shown = client.get(page(frozen)).content.decode()
    assert "Confirm step 3" in shown and 'http-equiv="refresh"' not in shown


def test_a_reconcile_step_in_the_workers_that_finds_violations_waits_for_a_finance_approver(
    client, ops, approver, ops_gateway_drifted, django_capture_on_commit_callbacks
):
    cutover = ops_gateway_drifted
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        client.post(step_url(cutover), {"step": "reconcile"})

    assert callbacks, "the run was handed to the workers"
    step = cutover.steps.get(key="reconcile")
    assert step.state == StepState.NEEDS_ACCEPTANCE
    assert (step.evidence["violations"], step.evidence["verdict"]) == (1, "violations")
    assert step.evidence["run_by"] == ops.username
    assert list(services.awaiting_acceptance(approver)) == [step]

    client.force_login(approver)
    client.post(step_url(cutover), {"step": "reconcile", "accept": "u1 is a known test wallet"})
    assert cutover.steps.get(key="reconcile").state == StepState.DONE


def test_a_snapshot_that_fails_in_the_workers_puts_the_step_back_saying_why(
    client, ops, frozen, settings, tmp_path, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the snapshots go")
    settings.SNAPSHOT_DIR = blocked
    # The worker's task raises, as a worker's would (django-q records it failed).
    with pytest.raises(NotADirectoryError), django_capture_on_commit_callbacks(execute=True):
        client.post(step_url(frozen), {"step": "snapshot"})

    step = frozen.steps.get(key="snapshot")
    assert step.state == StepState.PENDING
    assert step.evidence["last_attempt"].startswith(f"snapshot {Snapshot.objects.get().pk} failed: ")
    shown = client.get(page(frozen)).content.decode()
    assert "last attempt" in shown and "Confirm step 2" in shown


def test_a_step_whose_ending_signal_was_missed_is_recorded_when_the_page_is_looked_at(
    client, ops, frozen, django_capture_on_commit_callbacks
):
    step = background.start(frozen, "snapshot", actor=ops, trigger=RunTrigger.ADMIN)
    snapshot_finished.disconnect(dispatch_uid="cutover-settle-after-snapshot")
    try:
        from snapshots import tasks

        with django_capture_on_commit_callbacks(execute=True):
            tasks.take(step.evidence["snapshot_id"])
    finally:
        snapshot_finished.connect(background.settle_current, dispatch_uid="cutover-settle-after-snapshot")
    assert frozen.steps.get(key="snapshot").state == StepState.RUNNING

    client.force_login(ops)
    shown = client.get(page(frozen)).content.decode()

    assert frozen.steps.get(key="snapshot").state == StepState.DONE
    assert "Confirm step 3" in shown


def test_only_ops_start_a_step_in_the_workers(client, reviewer, approver, frozen):
    for user in (reviewer, approver):
        client.force_login(user)
        response = client.post(step_url(frozen), {"step": "snapshot"})
        assert response.status_code == 403
    assert frozen.steps.get(key="snapshot").state == StepState.PENDING
    assert not Snapshot.objects.exists()


@pytest.fixture
def ops_gateway_drifted(ops, drifted_wallets):
    cutover = services.start(actor=ops, name="go-live", target="production")
    for key in ("freeze", "snapshot"):
        services.confirm(cutover, key, actor=ops, gateway=drifted_wallets, trigger=RunTrigger.ADMIN)
    return cutover
