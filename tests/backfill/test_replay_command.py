import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backfill import file_replay, plan_approval, run_requests, runs
from backfill.models import DataMigration, ProviderEventDelivery
from tests.helpers import EXPORT, firestore_client, put_wallets
from tests.helpers import event_line as line


def replay(tmp_path, *options, lines=EXPORT):
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join(lines) + "\n")
    out = StringIO()
    call_command("replay_webhooks", str(export), "--json", *options, stdout=out)
    return json.loads(out.getvalue())


def snapshot(gateway):
    """Every wallet and ledger document, as stored."""
    state = {}
    for wallet in firestore_client(gateway.project).collection("wallets").stream():
        state[wallet.id] = (
            wallet.to_dict(),
            {d.id: d.to_dict() for d in wallet.reference.collection("ledger").stream()},
        )
    return state


@pytest.fixture
def wallets(gateway):
    put_wallets(gateway, {"u1": (0, []), "u2": (10, [10])})
    return gateway


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_replay_accounts_for_every_line(tmp_path, wallets):
    result = replay(tmp_path)

    assert result == {
        "migration_id": DataMigration.objects.get().pk,
        "total": 8,
        "applied": 3,
        "duplicate": 2,
        "deferred": 0,
        "quarantined": 3,
        "failed": 0,
        "dry_run": False,
    }
    assert result["total"] == sum(
        result[k] for k in ("applied", "duplicate", "deferred", "quarantined", "failed")
    )
    state = snapshot(wallets)
    assert state["u1"][0]["points"] == 70 and set(state["u1"][1]) == {"purchase-pay_1", "refund-re_1"}
    assert state["u2"][0]["points"] == 60
    assert ProviderEventDelivery.objects.count() == 8
    assert (
        firestore_client(wallets.project)
        .collection("dataMigrations")
        .document(str(result["migration_id"]))
        .get()
        .exists
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_second_replay_of_the_same_file_changes_nothing(tmp_path, wallets):
    replay(tmp_path)
    before = snapshot(wallets)

    again = replay(tmp_path)

    assert (again["applied"], again["duplicate"], again["quarantined"]) == (0, 5, 3)
    assert snapshot(wallets) == before


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_dry_run_writes_nothing_and_plans_what_the_run_does(tmp_path, wallets):
    before = snapshot(wallets)

    planned = replay(tmp_path, "--dry-run")

    assert snapshot(wallets) == before
    assert not firestore_client(wallets.project).collection("dataMigrations").get()
    plan = DataMigration.objects.get(pk=planned["migration_id"]).plan
    assert plan["wallets"]["u1"] == {
        "points_before": 0,
        "points_after": 70,
        "entries": {"purchase-pay_1": 100, "refund-re_1": -30},
    }
    assert len(planned["plan_checksum"]) == 64
    done = replay(tmp_path)
    assert {k: done[k] for k in ("applied", "duplicate", "quarantined")} == {
        k: planned[k] for k in ("applied", "duplicate", "quarantined")
    }
    assert snapshot(wallets)["u1"][0]["points"] == plan["wallets"]["u1"]["points_after"]


@pytest.mark.django_db
def test_a_run_bound_to_a_plan_refuses_a_changed_world(tmp_path, wallets, approver):
    planned = replay(tmp_path, "--dry-run")
    plan_approval.approve_plan(planned["migration_id"], actor=approver, reason="three payments")
    # Since the plan was approved, the purchase landed by another path.
    wallets.append_entry("u1", "purchase-pay_1", {"amount": 100, "type": "purchase"})
    before = snapshot(wallets)

    with pytest.raises(CommandError, match="would differ from plan"):
        replay(tmp_path, "--plan", str(planned["migration_id"]))
    assert snapshot(wallets) == before


@pytest.mark.django_db
def test_a_run_bound_to_an_unchanged_plan_goes_ahead_once_a_second_person_approved_it(
    tmp_path, wallets, approver, settings
):
    planned = replay(tmp_path, "--dry-run")
    before = snapshot(wallets)

    with pytest.raises(CommandError) as refused:
        replay(tmp_path, "--plan", str(planned["migration_id"]))
    assert str(refused.value) == (
        f"refused, nothing written: migration {planned['migration_id']} cannot be run for real yet: "
        "its plan moves 120 points, above BACKFILL_PLAN_APPROVAL_ABOVE (0): a second person, not who "
        f"planned it, approves plan {planned['migration_id']} first, on its page"
    )
    assert snapshot(wallets) == before
    assert DataMigration.objects.count() == 1  # not even planned again

    plan_approval.approve_plan(planned["migration_id"], actor=approver, reason="three payments")
    done = replay(tmp_path, "--plan", str(planned["migration_id"]))

    assert done["applied"] == planned["applied"] == 3


@pytest.mark.django_db
def test_a_plan_that_moves_no_more_than_the_threshold_needs_no_second_person(tmp_path, wallets, settings):
    settings.BACKFILL_PLAN_APPROVAL_ABOVE = 120  # u1 +70, u2 +50
    planned = replay(tmp_path, "--dry-run")

    done = replay(tmp_path, "--plan", str(planned["migration_id"]))

    assert done["applied"] == 3
    assert DataMigration.objects.get(pk=planned["migration_id"]).plan_approved_by is None


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_batch_with_one_duplicate_is_split_and_the_rest_applied(tmp_path, gateway):
    put_wallets(gateway, {f"w{n}": (0, []) for n in range(10)})
    # One payment is already in the ledger (a webhook got through before the outage).
    gateway.append_entry("w4", "purchase-pay_4", {"amount": 5, "type": "purchase"})
    lines = [line(f"evt_{n}", user=f"w{n}", payment=f"pay_{n}", points=5) for n in range(10)]

    result = replay(tmp_path, lines=lines)

    assert (result["applied"], result["duplicate"], result["total"]) == (9, 1, 10)
    for n in range(10):
        assert (
            firestore_client(gateway.project)
            .collection("wallets")
            .document(f"w{n}")
            .get()
            .to_dict()["points"]
            == 5
        )


@pytest.mark.django_db
def test_a_paused_file_replay_stops_at_a_checkpoint_and_resumes_from_it(tmp_path, gateway, ops):
    put_wallets(gateway, {f"w{n}": (0, []) for n in range(5)})
    lines = [line(f"evt_{n}", user=f"w{n % 5}", payment=f"pay_{n}", points=1) for n in range(250)]
    migration = run_requests.start_replay(path="export.jsonl", dry_run=False)

    def read_while_ops_pause():
        for number, text in enumerate(lines, 1):
            if number == 150:  # ops press pause while the run reads its second batch
                runs.set_status(migration.pk, "pause", actor=ops)
            yield text

    file_replay.run_replay(migration, read_while_ops_pause(), gateway=gateway)
    migration.refresh_from_db()
    assert (migration.status, migration.checkpoint, migration.processed) == ("paused", 100, 100)

    runs.set_status(migration.pk, "resume", actor=ops)
    migration.refresh_from_db()
    file_replay.run_replay(migration, lines, gateway=gateway)
    migration.refresh_from_db()
    assert (migration.status, migration.total, migration.applied, migration.duplicate) == (
        "completed",
        250,
        250,
        0,
    )
    assert DataMigration.objects.count() == 1
    assert (
        sum(
            firestore_client(gateway.project)
            .collection("wallets")
            .document(f"w{n}")
            .get()
            .to_dict()["points"]
            for n in range(5)
        )
        == 250
    )


@pytest.mark.django_db
def test_a_cancelled_file_replay_is_not_restarted_by_a_late_delivery(tmp_path, gateway, ops):
    put_wallets(gateway, {"u1": (0, [])})
    migration = run_requests.start_replay(path="export.jsonl", dry_run=False)
    runs.set_status(migration.pk, "cancel", actor=ops)
    migration.refresh_from_db()

    file_replay.run_replay(migration, [line("evt_1")], gateway=gateway)

    migration.refresh_from_db()
    assert (migration.status, migration.total) == ("cancelled", 0)
    assert (
        firestore_client(gateway.project).collection("wallets").document("u1").get().to_dict()["points"] == 0
    )
