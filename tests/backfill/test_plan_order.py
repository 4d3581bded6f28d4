"""A run bound to an approved plan does what the plan says: the plan and the run
decide the lines of a file in the same order."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from backfill import plan_approval
from backfill.models import DataMigration, ProviderEventDelivery
from tests.helpers import firestore_client


def line(event_id, kind="payment.succeeded", *, payment, points=100, user="n1", **extra):
    data = {"payment_id": payment, "user_id": user, "points": points, **extra}
    return json.dumps({"id": event_id, "type": kind, "created": "2026-11-20T10:00:00Z", "data": data})


def replay(path, *options):
    out = StringIO()
    call_command("replay_webhooks", str(path), "--json", *options, stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def spent_wallet(gateway):
    # n1 bought 100 points with pn and spent them: a refund of pn would take it below zero.
    gateway.write_wallets(
        [
            (
                "n1",
                0,
                {
                    "purchase-pn": {"type": "purchase", "amount": 100},
                    "spend-1": {"type": "spend", "amount": -100},
                },
            )
        ]
    )
    return gateway


@pytest.mark.django_db
def test_a_run_bound_to_a_plan_quarantines_the_refund_the_plan_quarantined(tmp_path, spent_wallet, approver):
    export = tmp_path / "export.jsonl"
    export.write_text(
        line("evt_r", "payment.refunded", payment="pn", refund_id="re_pn")
        + "\n"
        + line("evt_p2", payment="pn2")
        + "\n"
    )

    plan = replay(export, "--dry-run")
    plan_approval.approve_plan(plan["migration_id"], actor=approver, reason="checked the refund")
    done = replay(export, "--plan", str(plan["migration_id"]))

    assert (plan["applied"], plan["quarantined"]) == (1, 1)
    assert (done["applied"], done["quarantined"]) == (1, 1)
    refund = ProviderEventDelivery.objects.get(event_id="evt_r", migration_id=done["migration_id"])
    assert refund.status == "quarantined" and "negative" in refund.reason
    wallet = firestore_client(spent_wallet.project).collection("wallets").document("n1").get().to_dict()
    assert wallet["points"] == 100
    assert DataMigration.objects.get(pk=done["migration_id"]).error == ""


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_real_run_decides_a_wallets_lines_in_file_order_within_one_batch(tmp_path, spent_wallet):
    spent_wallet.write_wallets([("n2", 0, {})])
    lines = [
        line("evt_x", payment="px", user="n2"),  # another wallet's payment, batched as before
        line("evt_rn", "payment.refunded", payment="pn", refund_id="re_n"),  # n1 is at 0: quarantined
        line("evt_a", payment="pa"),  # then n1 gets 100
        line("evt_ra", "payment.refunded", payment="pa", refund_id="re_a"),  # and gives it back: applied
    ]
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join(lines) + "\n")

    plan = replay(export, "--dry-run")
    done = replay(export)

    assert {k: plan[k] for k in ("applied", "quarantined")} == {"applied": 3, "quarantined": 1}
    assert {k: done[k] for k in ("applied", "quarantined")} == {"applied": 3, "quarantined": 1}
    quarantined = ProviderEventDelivery.objects.get(migration_id=done["migration_id"], status="quarantined")
    assert quarantined.event_id == "evt_rn"
    points = {
        w.id: w.to_dict()["points"]
        for w in firestore_client(spent_wallet.project).collection("wallets").stream()
    }
    assert points == {"n1": 0, "n2": 100}
