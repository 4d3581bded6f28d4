"""The other direction of a settlement run: every payment the ledger holds as
credited within the statement's period is checked against it, whatever path
credited it (the webhook, a file replay, an entry the points app wrote)."""

from datetime import UTC, datetime

import pytest

from backfill.models import EventStatus, ProviderEventDelivery
from settlement.models import Outcome, SettlementRow
from tests.helpers import command_json, event_line, put_wallets

HEADER = "type,payment_id,reference,user_id,points,amount,currency,status,settled_at\n"
# event_line's events are created at 2026-11-20T10:00:00Z: a statement of that morning covers them.
MORNING = ("2026-11-20T09:00:00+00:00", "2026-11-20T11:00:00+00:00")


def reconcile(path, *args):
    return command_json("reconcile_settlement", path, *args)


def replay(path):
    return command_json("replay_webhooks", path)


def missing_at_provider(summary):
    rows = SettlementRow.objects.filter(run_id=summary["run_id"], outcome=Outcome.MISSING_AT_PROVIDER)
    return {row.payment_id: row for row in rows}


@pytest.fixture
def replayed(gateway, tmp_path):
    """u1 credited 40 for pay_file by replay_webhooks from an export (event of the
    morning, replayed now) and 25 for pay_app by another path (an entry written
    straight into the ledger, as the points app would)."""
    put_wallets(gateway, {"u1": (0, [])})
    export = tmp_path / "export.jsonl"
    export.write_text(event_line("evt_file", payment="pay_file", points=40) + "\n")
    assert replay(export)["applied"] == 1
    created = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    gateway.append_entry(
        "u1",
        "purchase-pay_app",
        {"type": "purchase", "amount": 25, "paymentId": "pay_app", "createdAt": created},
    )
    return gateway


@pytest.mark.usefixtures("one_person_suffices")
def test_credits_from_a_file_replay_and_any_other_path_are_checked_against_the_statement(replayed, tmp_path):
    path = tmp_path / "statement.csv"
    path.write_text(
        HEADER
        + f"payment,pay_a,,u1,10,1.00,EUR,settled,{MORNING[0]}\n"
        + f"payment,pay_b,,u1,10,1.00,EUR,settled,{MORNING[1]}\n"
    )
    summary = reconcile(path)
    missing = missing_at_provider(summary)
    assert sorted(missing) == ["pay_app", "pay_file"] and summary["missing_at_provider"] == 2
    replayed_row = missing["pay_file"]
    delivery = ProviderEventDelivery.objects.get(event_id="evt_file")
    assert delivery.migration_id is not None and delivery.status == EventStatus.APPLIED
    assert (replayed_row.user_id, replayed_row.points, replayed_row.delivery_id) == ("u1", 40, delivery.pk)
    assert "not in the statement" in replayed_row.detail and "2026-11-20 10:00" in replayed_row.detail
    assert (missing["pay_app"].points, missing["pay_app"].delivery_id) == (25, None)

    # In the statement, or outside the period, they are not missing.
    path.write_text(
        HEADER
        + f"payment,pay_file,,u1,40,4.00,EUR,settled,{MORNING[0]}\n"
        + f"payment,pay_app,,u1,25,2.50,EUR,settled,{MORNING[1]}\n"
    )
    summary = reconcile(path)
    assert (summary["matched"], summary["missing_at_provider"]) == (2, 0)
    later = reconcile(path, "--period", "2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z")
    assert later["missing_at_provider"] == 0


def test_the_credits_of_a_period_are_read_page_by_page_each_once(gateway, monkeypatch):
    monkeypatch.setattr("revassure.firestore.entry_reads.CREDITS_PAGE", 2)
    put_wallets(gateway, {"u1": (0, []), "u2": (0, [])})
    at = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    later = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    for uid, payment, created in [
        ("u1", "p1", at),
        ("u2", "p2", at),  # the same instant: pages break ties by name
        ("u1", "p3", at),
        ("u2", "p4", later),
        ("u1", "p5", datetime(2026, 11, 21, tzinfo=UTC)),  # after the period
    ]:
        fields = {"type": "purchase", "amount": 5, "paymentId": payment, "createdAt": created}
        gateway.append_entry(uid, f"purchase-{payment}", fields)
    gateway.append_entry("u1", "e-redeem", {"type": "redemption", "amount": -5, "createdAt": at})
    read = list(gateway.credits_between(at, later))
    assert [(uid, entry) for uid, entry, _ in read] == [
        ("u1", "purchase-p1"),
        ("u1", "purchase-p3"),
        ("u2", "purchase-p2"),
        ("u2", "purchase-p4"),
    ]
    assert read[0][2] == {"amount": 5, "paymentId": "p1", "createdAt": at}
