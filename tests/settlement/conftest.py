"""A settlement world: wallets credited through stored deliveries (so their
identity markers and applied deliveries exist, as in production), and
statements written as CSV files in a temporary directory."""

import csv
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from backfill.services import apply_delivery
from observability.models import AlertRule
from settlement.statement import COLUMNS
from tests.helpers import put_wallets, stored_event

HEADER = list(COLUMNS)  # the statement's columns, as the product reads them


@pytest.fixture(autouse=True)
def quiet(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "kept"  # uploads kept for the workers
    AlertRule.objects.update(enabled=False)


@pytest.fixture
def settled(world):
    """A settlement time just after the world's payments were credited."""
    return timezone.now().isoformat()


@pytest.fixture
def write_statement(tmp_path):
    """write_statement(rows, name=...) -> path; a row is a dict over HEADER (missing
    cells empty) or a list of cells written as is."""
    counter = iter(range(1000))

    def write(rows, *, name=None, header=HEADER, raw: str | None = None):
        path = tmp_path / (name or f"statement-{next(counter)}.csv")
        if raw is not None:
            path.write_text(raw, encoding="utf-8")
            return path
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            for row in rows:
                writer.writerow(row if isinstance(row, list) else [row.get(c, "") for c in header])
        return path

    return write


def credit(gateway, event_id, **fields):
    """A provider event stored as a webhook delivery and applied (entry, wallet, identity marker)."""
    delivery = stored_event(event_id, **fields)
    applied = apply_delivery(delivery.pk, gateway=gateway)
    assert applied.status == "applied", applied.reason
    return applied


@pytest.fixture
def world(gateway):
    """Three wallets; what the ledger and the stored deliveries hold:

    pay_ok    u1 100 credited       re_ok   refund of pay_ok, 20, applied
    pay_pts   u1  50 credited       pay_usr u2 70 credited (statement: u1)
    pay_ns    u2  30 credited (statement: pending)
    pay_gone  u3  40 credited (not in the statement: missing at the provider)
    pay_ref   u3 200 credited (its refund re_1 settled, never applied)
    pay_miss  u1  80 stored, never applied (replayable)
    """
    put_wallets(gateway, {"u1": (0, []), "u2": (0, []), "u3": (0, [])})
    credit(gateway, "evt_ok", user="u1", payment="pay_ok", points=100)
    credit(
        gateway,
        "evt_re_ok",
        kind="payment.refunded",
        user="u1",
        payment="pay_ok",
        points=20,
        refund_id="re_ok",
    )
    credit(gateway, "evt_pts", user="u1", payment="pay_pts", points=50)
    credit(gateway, "evt_usr", user="u2", payment="pay_usr", points=70)
    credit(gateway, "evt_ns", user="u2", payment="pay_ns", points=30)
    credit(gateway, "evt_gone", user="u3", payment="pay_gone", points=40)
    credit(gateway, "evt_ref", user="u3", payment="pay_ref", points=200)
    stored_event("evt_miss", user="u1", payment="pay_miss", points=80)
    return gateway


@pytest.fixture
def every_outcome(settled):
    """Statement rows giving each outcome once (malformed: three ways)."""

    def row(kind, payment, user, points, *, reference="", status="settled", amount="1.00"):
        return {
            "type": kind,
            "payment_id": payment,
            "reference": reference,
            "user_id": user,
            "points": points,
            "amount": amount,
            "currency": "EUR",
            "status": status,
            "settled_at": settled,
        }

    a_day_before = (datetime.fromisoformat(settled) - timedelta(days=1)).isoformat()
    first = {**row("payment", "pay_ok", "u1", 100, amount="10.00"), "settled_at": a_day_before}
    return [
        first,  # matched; the statement's period runs from here to `settled`
        row("refund", "pay_ok", "u1", 20, reference="re_ok", amount="-2.00"),  # matched
        row("payment", "pay_pts", "u1", 60, amount="6.00"),  # points_mismatch
        row("payment", "pay_usr", "u1", 70, amount="7.00"),  # user_mismatch
        row("payment", "pay_ns", "u2", 30, status="pending", amount="3.00"),  # not_settled
        row("payment", "pay_pend", "u1", 10, status="pending"),  # matched: neither paid nor credited
        row("payment", "pay_miss", "u1", 80, amount="8.00"),  # missing_in_ledger, replayable
        row("payment", "pay_nodel", "u2", 90, amount="9.00"),  # missing_in_ledger, no delivery
        row("refund", "pay_ref", "u3", 50, reference="re_1", amount="-5.00"),  # unreversed
        row("payment", "pay_ok", "u1", 100, amount="10.00"),  # duplicate_in_statement
        row("payment", "pay_fw", "u1", "１２"),  # malformed: full-width digits
        row("payment", "pay_comma", "u1", 5, amount="1,5"),  # malformed: amount
        row("transfer", "pay_tr", "u1", 5),  # malformed: type
        row("payment", "pay_ref", "u3", 200, amount="20.00"),  # matched
    ]
