import datetime as dt
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from reconciliation import reports
from reconciliation.models import Break, ReconciliationRun, RunStatus
from revassure.flags import set_flag
from tests.helpers import firestore_client, put_wallets, without_immutability_triggers


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
def test_verify_reports_names_a_mirror_field_changed_behind_its_checksum_in_text_and_json(gateway):
    put_wallets(gateway, {"u1": (12, [10])})
    run_command("reconcile")
    run = ReconciliationRun.objects.get()
    firestore_client(gateway.project).collection("reconciliationReports").document(str(run.pk)).update(
        {"violations_count": 7}
    )

    from io import StringIO

    err = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("verify_reports", stdout=StringIO(), stderr=err)
    assert raised.value.returncode == 2
    assert (
        f"run {run.pk}: Firestore mirror differs from the report: violations_count is 7, the report has 1"
        in (err.getvalue())
    )
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("verify_reports", "--json", stdout=out)
    assert json.loads(out.getvalue())["problems"] == [
        {
            "run_id": str(run.pk),
            "message": "Firestore mirror differs from the report: violations_count is 7, the report has 1",
            "difference": {
                "document": f"reconciliationReports/{run.pk}",
                "field": "violations_count",
                "mirror": 7,
                "report": 1,
            },
        }
    ]


@pytest.mark.django_db
def test_verify_reports_json_names_the_run(gateway, capsys):
    put_wallets(gateway, {"u1": (12, [10])})
    run_command("reconcile")
    firestore_client(gateway.project).collection("reconciliationReports").document(
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
    assert seeded == {
        "project": gateway.project,
        "wallets": 60,
        "drifted": 6,
        "malformed": 3,
        "history_runs": [],
    }

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
    ours = Schedule.objects.filter(func__startswith="reconciliation.tasks.sweep_").order_by("name")
    assert [(s.name, s.func, s.schedule_type, s.minutes) for s in ours] == [
        ("sweep-balance-requests", "reconciliation.tasks.sweep_requests", "I", 10),
        ("sweep-reconciliation-runs", "reconciliation.tasks.sweep_runs", "I", 1),
        ("sweep-written-wallets", "reconciliation.tasks.sweep_written_wallets", "I", 1),
    ]
    assert Schedule.objects.filter(name="sweep-reconciliation-runs").count() == 1


@pytest.mark.django_db
def test_reconcile_json_is_the_runs_summary_with_its_violations(gateway):
    put_wallets(gateway, {"u1": (12, [10]), "u2": (3, [3])})

    result = json.loads(run_command("reconcile", "--json"))

    run = ReconciliationRun.objects.get()
    violations = result.pop("violations")
    assert result == reports.run_summary(run)
    assert [v["uid"] for v in violations] == ["u1"]


@pytest.mark.django_db
def test_seed_demo_history_seals_a_day_by_day_chain_that_the_first_real_run_continues(gateway, settings):
    settings.BREAK_TRACKING = True
    seeded = json.loads(
        run_command("seed_demo", "--wallets", "80", "--drift-share", "0.2", "--history", "6", "--json")
    )
    history = list(ReconciliationRun.objects.filter(pk__in=seeded["history_runs"]).order_by("chain_seq"))
    real = json.loads(run_command("reconcile", "--json"))

    # One completed full run a day, oldest first, each saying it is seeded history.
    assert len(history) == 6
    assert [run.chain_seq for run in history] == [1, 2, 3, 4, 5, 6]
    assert {run.trigger for run in history} == {"demo"}
    days = [run.finished_at.date() for run in history]
    assert days == sorted(set(days)) and (days[-1] - days[0]).days == 5
    # The drift arrives over the days, so the chart climbs to what the real run finds.
    counts = [run.violations_count for run in history]
    assert counts == sorted(counts) and counts[0] < real["violations_count"]
    assert counts[-1] <= real["violations_count"]
    # Every history run is what a run of that day would have found, down to the totals.
    last = history[-1]
    assert last.total_ledger_sum == real["total_ledger_sum"]
    assert last.total_wallet_points - last.liability_difference == real["total_ledger_sum"]
    # The chain verifies, mirror included, with the real run as the 7th report.
    checked, problems = reports.verify(gateway=gateway)
    assert (checked, problems) == (7, [])
    # The breaks have ages: the oldest was first seen on the first history day.
    oldest = Break.objects.order_by("first_seen").first()
    assert oldest is not None and oldest.first_seen.date() == days[0]


@pytest.mark.django_db
def test_seed_demo_history_refuses_a_database_that_has_runs(gateway):
    put_wallets(gateway, {"a": (1, [1])})
    run_command("reconcile")
    with pytest.raises(CommandError, match="before every real run"):
        run_command("seed_demo", "--wallets", "5", "--history", "3")


@pytest.mark.django_db
def test_verify_reports_json_shows_a_mirror_value_json_has_no_type_for(gateway):
    put_wallets(gateway, {"u1": (12, [10])})
    run_command("reconcile")
    run = ReconciliationRun.objects.get()
    when = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.UTC)
    firestore_client(gateway.project).collection("reconciliationReports").document(str(run.pk)).update(
        {"finished_at": when}
    )

    from io import StringIO

    out = StringIO()
    with pytest.raises(CommandError):
        call_command("verify_reports", "--json", stdout=out)
    (problem,) = json.loads(out.getvalue())["problems"]
    assert problem["difference"]["field"] == "finished_at"
    assert problem["difference"]["mirror"].startswith("2026-11-20 10:00:00")
