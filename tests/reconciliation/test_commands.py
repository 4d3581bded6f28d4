import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from reconciliation import reports
from reconciliation.models import ReconciliationRun, RunStatus
from revassure.flags import set_flag
from tests.helpers import put_wallets, without_immutability_triggers


def run_command(*args):
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_reconcile_json_prints_one_object_with_the_findings(gateway):
    put_wallets(gateway, {"u1": (12, [10]), "u2": (3, [3]), "u3": (5, [5, "x"])})

    out = run_command("reconcile", "--json")

    result = json.loads(out)
    run = ReconciliationRun.objects.get()
    assert result["run_id"] == run.pk
    assert result["status"] == "completed"
    assert result["wallets_checked"] == 3
    assert result["violations_count"] == 1
    assert result["total_abs_drift"] == 2
    assert result["checksum"] == run.checksum
    assert len(run.correlation_id) == 32  # the command's run has an id of its own in every log line
    assert result["violations"] == [
        {"uid": "u1", "wallet_points": 12, "ledger_sum": 10, "delta": 2, "entries": 1, "kind": "drift"}
    ]


@pytest.mark.django_db
def test_a_malformed_entry_that_changes_the_sum_is_reported(gateway):
    put_wallets(gateway, {"u3": (15, [5, "10"])})

    result = json.loads(run_command("reconcile", "--json"))

    assert result["violations"] == [
        {"uid": "u3", "wallet_points": 15, "ledger_sum": 5, "delta": 10, "entries": 2, "kind": "malformed"}
    ]


@pytest.mark.django_db
def test_reconcile_uid_option_limits_the_run(gateway):
    put_wallets(gateway, {"u1": (12, [10]), "u2": (4, [3])})

    result = json.loads(run_command("reconcile", "--uid", "u2", "--json"))

    assert result["wallets_checked"] == 1
    assert [v["uid"] for v in result["violations"]] == ["u2"]


@pytest.mark.django_db
def test_reconcile_refuses_with_a_nonzero_exit_when_the_flag_is_off(gateway, ops):
    set_flag("reconciliation_enabled", False, actor=ops, reason="cutover in progress")

    with pytest.raises(CommandError, match="reconciliation_enabled' is off \\(cutover in progress\\)") as err:
        run_command("reconcile", "--json")
    assert err.value.returncode == 3
    assert not ReconciliationRun.objects.exists()


@pytest.mark.django_db
def test_reconcile_exits_nonzero_when_firestore_is_unreachable(firestore_project, settings, monkeypatch):
    from revassure import firestore

    settings.FIRESTORE_RETRY_DEADLINE = 1.0
    broken = firestore.FirestoreGateway(firestore_project, retry_deadline=1.0, call_timeout=1.0)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr(firestore, "get_gateway", lambda project=None: broken)
    monkeypatch.setattr("reconciliation.management.commands.reconcile.get_gateway", lambda: broken)

    with pytest.raises(CommandError, match="could not run"):
        run_command("reconcile", "--json")
    assert ReconciliationRun.objects.get().status == RunStatus.FAILED


@pytest.mark.django_db
def test_reconcile_enqueue_hands_the_run_to_the_workers(
    gateway, monkeypatch, django_capture_on_commit_callbacks
):
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    put_wallets(gateway, {"u1": (1, [1])})
    monkeypatch.setattr(Conf, "SYNC", False)
    broker = get_broker()
    broker.purge_queue()

    with django_capture_on_commit_callbacks(execute=True):
        result = json.loads(run_command("reconcile", "--enqueue", "--json"))

    assert result["status"] == "pending"
    assert broker.queue_size() == 1
    broker.purge_queue()


@pytest.mark.django_db
def test_verify_reports_passes_then_names_the_tampered_run(gateway):
    put_wallets(gateway, {"u1": (12, [10])})
    run_command("reconcile")
    run_command("reconcile")
    assert "2 reports verified" in run_command("verify_reports")

    without_immutability_triggers()
    first = ReconciliationRun.objects.order_by("pk").first()
    first.violations.update(ledger_sum=12)

    with pytest.raises(CommandError) as err:
        run_command("verify_reports", "--json")
    assert err.value.returncode == 2


@pytest.mark.django_db
def test_verify_reports_json_names_the_run(gateway, capsys):
    put_wallets(gateway, {"u1": (12, [10])})
    run_command("reconcile")
    gateway.client.collection("reconciliationReports").document(
        str(ReconciliationRun.objects.get().pk)
    ).delete()

    from io import StringIO

    out = StringIO()
    with pytest.raises(CommandError):
        call_command("verify_reports", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["ok"] is False
    assert result["problems"] == [
        {
            "run_id": str(ReconciliationRun.objects.get().pk),
            "message": "not mirrored to Firestore reconciliationReports",
        }
    ]


@pytest.mark.django_db
def test_seed_demo_writes_wallets_that_reconcile_finds_drift_in(gateway):
    seeded = json.loads(
        run_command("seed_demo", "--wallets", "60", "--drift-share", "0.1", "--malformed", "3", "--json")
    )
    assert seeded == {"project": gateway.project, "wallets": 60, "drifted": 6, "malformed": 3}

    result = json.loads(run_command("reconcile", "--json"))

    kinds = [v["kind"] for v in result["violations"]]
    assert result["wallets_checked"] == 60
    assert kinds.count("malformed") == 3
    # Every drifted wallet is found; a drifted wallet may also hold the malformed entry.
    assert 6 <= len(kinds) <= 9
    assert kinds.count("drift") >= 3


@pytest.mark.django_db
def test_sync_schedules_is_idempotent(settings):
    from django_q.models import Schedule

    settings.RECONCILE_DAILY_AT = "03:30"
    run_command("sync_schedules")
    run_command("sync_schedules")

    schedule = Schedule.objects.get(name="daily-reconcile")
    assert schedule.cron == "30 3 * * *"
    assert schedule.func == "reconciliation.tasks.scheduled_reconcile"
    assert Schedule.objects.filter(func="reconciliation.tasks.scheduled_reconcile").count() == 1
    sweep = Schedule.objects.get(name="sweep-balance-requests")
    assert (sweep.func, sweep.schedule_type, sweep.minutes) == (
        "reconciliation.tasks.sweep_requests",
        "I",
        10,
    )


@pytest.mark.django_db
def test_reconcile_json_is_the_runs_summary_with_its_violations(gateway):
    put_wallets(gateway, {"u1": (12, [10]), "u2": (3, [3])})

    result = json.loads(run_command("reconcile", "--json"))

    run = ReconciliationRun.objects.get()
    violations = result.pop("violations")
    assert result == reports.run_summary(run)
    assert [v["uid"] for v in violations] == ["u1"]
