import pytest

from reconciliation import services
from reconciliation.models import ReconciliationChunk, ReconciliationRun, RunStatus, RunTrigger
from revassure.firestore import MISSING, FirestoreGateway, FirestoreUnavailable
from revassure.flags import FeatureDisabled
from tests.helpers import firestore_client, put_wallets


def reconcile(gateway, uids=None):
    return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway, uids=uids)


def violations(run):
    return {v.uid: v for v in run.violations.all()}


@pytest.mark.django_db
def test_clean_wallets_complete_with_no_violations(gateway):
    put_wallets(gateway, {"u1": (150, [100, 50]), "u2": (0, [10, -10]), "u3": (7, [7])})

    run = reconcile(gateway)

    assert run.status == RunStatus.COMPLETED
    assert run.wallets_checked == 3
    assert run.violations_count == 0
    assert run.total_abs_drift == 0
    assert (run.total_wallet_points, run.total_ledger_sum, run.liability_difference) == (157, 157, 0)
    assert len(run.checksum) == 64


@pytest.mark.django_db
def test_it_reports_positive_and_negative_drift(gateway):
    put_wallets(gateway, {"over": (130, [100, 20]), "under": (90, [100]), "fine": (5, [5])})

    run = reconcile(gateway)

    found = violations(run)
    assert set(found) == {"over", "under"}
    assert (found["over"].wallet_points, found["over"].ledger_sum, found["over"].delta) == (130, 120, 10)
    assert (found["under"].wallet_points, found["under"].ledger_sum, found["under"].delta) == (90, 100, -10)
    assert {v.kind for v in found.values()} == {"drift"}
    assert found["over"].entries == 2
    assert run.total_abs_drift == 20
    assert (run.total_wallet_points, run.total_ledger_sum, run.liability_difference) == (225, 225, 0)


@pytest.mark.django_db
def test_empty_ledger_is_clean_at_zero_points_and_drift_with_points(gateway):
    put_wallets(gateway, {"empty": (0, []), "phantom": (40, [])})

    run = reconcile(gateway)

    found = violations(run)
    assert set(found) == {"phantom"}
    assert (found["phantom"].delta, found["phantom"].entries, found["phantom"].kind) == (40, 0, "drift")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "amount, problem",
    [("25", "not a number"), (2.5, "not an integer"), (MISSING, "missing"), (None, "not a number")],
)
def test_malformed_amounts_are_reported_never_coerced(gateway, amount, problem):
    put_wallets(gateway, {"bad": (125, [100, amount])})

    run = reconcile(gateway)

    violation = violations(run)["bad"]
    assert violation.kind == "malformed"
    assert violation.ledger_sum == 100  # integer amounts only
    assert violation.delta == 25
    assert violation.entries == 2
    [entry] = violation.details["malformed_entries"]
    assert entry["entry"] == "e001"
    assert entry["problem"] == problem
    assert run.malformed_count == 1 and run.drift_count == 0


@pytest.mark.django_db
def test_a_float_amount_is_malformed_even_when_the_sums_agree(gateway):
    put_wallets(gateway, {"floaty": (10, [5, 5.0])})

    run = reconcile(gateway)

    violation = violations(run)["floaty"]
    assert violation.kind == "malformed"
    assert (violation.ledger_sum, violation.delta) == (5, 5)


@pytest.mark.django_db
def test_wallet_points_that_are_not_an_integer_are_malformed(gateway):
    put_wallets(gateway, {"text": ("100", [100]), "nopoints": (MISSING, [3])})

    run = reconcile(gateway)

    found = violations(run)
    assert found["text"].kind == "malformed"
    assert found["text"].wallet_points is None and found["text"].delta is None
    assert "not a number" in found["text"].details["wallet"]
    assert "missing" in found["nopoints"].details["wallet"]


@pytest.mark.django_db
def test_a_write_landing_during_the_run_is_not_reported(gateway, monkeypatch, settings):
    # Reading live, the two sides are read at different moments (at one instant
    # they are not: tests/reconciliation/test_point_in_time.py); the re-check copes.
    settings.RECONCILE_POINT_IN_TIME = False
    put_wallets(gateway, {"busy": (100, [60, 40]), "drifted": (9, [10])})
    real_aggregation = gateway.start_aggregation
    credited = []

    def aggregate_after_a_purchase(uids, **kwargs):
        # The points app credits 25 points (entry and wallet in one atomic write)
        # after the run read the wallet's points and before it sums the ledger.
        gateway.append_entry("busy", "late-purchase", {"amount": 25, "type": "purchase"})
        credited.append("busy")
        return real_aggregation(uids, **kwargs)

    monkeypatch.setattr(gateway, "start_aggregation", aggregate_after_a_purchase)

    run = reconcile(gateway)

    assert credited == ["busy"]
    assert set(violations(run)) == {"drifted"}
    assert run.wallets_checked == 2
    assert (run.total_wallet_points, run.total_ledger_sum) == (125 + 9, 125 + 10)


@pytest.mark.django_db
def test_uids_limit_the_run_and_an_unknown_uid_is_not_counted(gateway):
    put_wallets(gateway, {"a": (1, [2]), "b": (5, [6]), "c": (3, [3])})

    run = reconcile(gateway, uids=["a", "c", "nobody"])

    assert run.scope_uids == ["a", "c", "nobody"]
    assert run.wallets_checked == 2
    assert set(violations(run)) == {"a"}


@pytest.mark.django_db
def test_a_ledger_without_a_wallet_document_is_drift(gateway):
    gateway.append_entry("orphan", "e1", {"amount": 30, "type": "purchase"})
    firestore_client(gateway.project).collection("wallets").document("orphan").delete()

    run = reconcile(gateway, uids=["orphan"])

    violation = violations(run)["orphan"]
    assert (violation.kind, violation.wallet_points, violation.ledger_sum) == ("drift", 0, 30)
    assert "missing" in violation.details["wallet"]


@pytest.mark.django_db
def test_workers_share_a_run_in_chunks_with_the_same_result(
    gateway, settings, django_capture_on_commit_callbacks
):
    settings.RECONCILE_CHUNK_SIZE = 2
    wallets = {f"w{n}": (n + (1 if n % 3 == 0 else 0), [n]) for n in range(7)}
    put_wallets(gateway, wallets)

    with django_capture_on_commit_callbacks(execute=True):
        queued = services.request_run(actor=None, trigger=RunTrigger.SCHEDULE)
    # Sync mode: the start task and each chunk task ran as the workers would.
    queued.refresh_from_db()
    inline = reconcile(gateway)

    assert queued.status == RunStatus.COMPLETED
    assert (queued.chunks_total, queued.chunks_done) == (4, 4)
    assert queued.wallets_checked == inline.wallets_checked == 7
    assert sorted(violations(queued)) == sorted(violations(inline)) == ["w0", "w3", "w6"]
    assert not ReconciliationChunk.objects.exists()  # chunks are scratch, dropped at the seal


@pytest.mark.django_db
def test_a_chunk_delivered_twice_counts_once(gateway, settings, django_capture_on_commit_callbacks):
    settings.RECONCILE_CHUNK_SIZE = 1
    put_wallets(gateway, {"x": (2, [1]), "y": (1, [1])})
    run = ReconciliationRun.objects.create(trigger=RunTrigger.COMMAND)
    delivered = []

    with django_capture_on_commit_callbacks(execute=True):
        services.execute_run(run.pk, gateway=gateway, inline=False, enqueue_chunk=delivered.append)
    first, second = delivered
    services.process_chunk(first, gateway=gateway)
    services.process_chunk(first, gateway=gateway)
    services.process_chunk(second, gateway=gateway)
    services.process_chunk(second, gateway=gateway)  # after the seal: nothing left to do

    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert (run.chunks_done, run.wallets_checked, run.violations_count) == (2, 2, 1)


@pytest.mark.django_db
def test_a_disabled_flag_refuses_and_creates_no_run(gateway, settings):
    settings.FEATURE_FLAG_DEFAULTS = {**settings.FEATURE_FLAG_DEFAULTS, "reconciliation_enabled": False}

    with pytest.raises(FeatureDisabled, match="reconciliation_enabled"):
        reconcile(gateway)
    with pytest.raises(FeatureDisabled):
        services.request_run(actor=None, trigger=RunTrigger.SCHEDULE)
    assert not ReconciliationRun.objects.exists()


@pytest.mark.django_db
def test_firestore_failure_fails_the_run_with_the_error(firestore_project, monkeypatch):
    # A real failure, as the gateway reports it: Firestore cannot be reached
    # (nothing listens on the discard port) and the retries run out.
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    unreachable = FirestoreGateway(firestore_project, retry_deadline=1.0, call_timeout=1.0)

    with pytest.raises(FirestoreUnavailable) as failure:
        reconcile(unreachable)

    run = ReconciliationRun.objects.get()
    assert run.status == RunStatus.FAILED
    assert type(failure.value).__name__ in run.error and "127.0.0.1:9" in run.error
    assert run.checksum == ""


@pytest.mark.django_db
def test_a_user_without_the_permission_cannot_start_a_run(gateway, reviewer, ops):
    with pytest.raises(PermissionError):
        services.request_run(actor=reviewer, trigger=RunTrigger.ADMIN)
    run = services.request_run(actor=ops, trigger=RunTrigger.ADMIN)
    assert run.requested_by == ops
