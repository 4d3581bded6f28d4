"""What a statement's rows and the ledger's credits come to at the edges: credits
from file replays and other paths checked against the statement, malformed rows
that still name their payment, stray quotes, a header naming a column twice, and
times past the calendar's ends."""

from datetime import datetime, timedelta, timezone

import pytest
from django.core.management.base import CommandError

from settlement.models import Outcome, SettlementRow, SettlementRun
from tests.helpers import command_json

HEADER = "type,payment_id,reference,user_id,points,amount,currency,status,settled_at\n"
# event_line's events are created at 2026-11-20T10:00:00Z: a statement of that morning covers them.
MORNING = ("2026-11-20T09:00:00+00:00", "2026-11-20T11:00:00+00:00")
WIDE_PERIOD = ("2026-01-01T00:00:00Z", "2030-01-01T00:00:00Z")  # holds every credit of the world


def reconcile(path, *args):
    return command_json("reconcile_settlement", path, *args)


def replay(path):
    return command_json("replay_webhooks", path)


def missing_at_provider(summary):
    rows = SettlementRow.objects.filter(run_id=summary["run_id"], outcome=Outcome.MISSING_AT_PROVIDER)
    return {row.payment_id: row for row in rows}


def test_a_malformed_row_never_reports_its_payment_missing_at_the_provider(world, write_statement, settled):
    # pay_gone (u3, 40) and pay_ref (u3, 200) were credited through the webhook just now.
    raw = (
        HEADER
        + f'payment,pay_gone,,u3,40,"7,00",EUR,settled,{settled}\n'
        + f"payment,pay_ref,,u3,２００,20.00,EUR,settled,{settled}\n"
        + f"payment,pay_ok,,u1,100,10.00,EUR,settled,{settled}\n"
    )
    summary = reconcile(
        write_statement([], raw=raw), "--period", "2026-01-01T00:00:00Z", "2030-01-01T00:00:00Z"
    )
    assert summary["malformed_rows"] == 2 and summary["matched"] == 1
    malformed = SettlementRow.objects.get(run_id=summary["run_id"], line=2)
    assert malformed.outcome == Outcome.MALFORMED and "amount '7,00'" in malformed.detail
    # Credited and not named by any row: those only.
    assert set(missing_at_provider(summary)) == {"pay_pts", "pay_usr", "pay_ns"}


def test_a_stray_quote_makes_only_its_line_malformed(world, write_statement, settled):
    good = [
        f"payment,{p},,{u},{n},1.00,EUR,settled,{settled}\n"
        for p, u, n in [
            ("pay_pts", "u1", 50),
            ("pay_gone", "u3", 40),
            ("pay_ref", "u3", 200),
        ]
    ]
    raw = (
        HEADER
        + f'payment,pay_ok,,u1,100,"1.00,EUR,settled,{settled}\n'  # its quote never closes
        + "".join(good)
        + f'refund,pay_ok,re_ok,u1,20,"-2.00",EUR,settled,{settled}\n'  # a later quote
    )
    summary = reconcile(write_statement([], raw=raw), "--period", *WIDE_PERIOD)
    rows = {r.line: r for r in SettlementRow.objects.filter(run_id=summary["run_id"]).exclude(line=None)}
    assert sorted(rows) == [2, 3, 4, 5, 6]
    assert rows[2].outcome == Outcome.MALFORMED and "quote" in rows[2].detail
    assert rows[2].raw.startswith('payment,pay_ok,,u1,100,"1.00')
    assert [rows[n].outcome for n in (3, 4, 5, 6)] == [Outcome.MATCHED] * 4
    assert (summary["rows"], summary["matched"], summary["malformed_rows"]) == (5, 4, 1)
    # pay_ok is on the malformed line: not reported missing at the provider.
    assert set(missing_at_provider(summary)) == {"pay_usr", "pay_ns"}


def test_a_quote_open_to_the_end_of_the_file_makes_only_its_line_malformed(world, write_statement, settled):
    raw = (
        HEADER
        + f"payment,pay_ok,,u1,100,1.00,EUR,settled,{settled}\n"
        + f'payment,pay_x,,u1,"5,1.00,EUR,settled,{settled}\n'
        + "".join(f"payment,pay_{n},,u1,5,1.00,EUR,settled,{settled}\n" for n in range(12))
    )
    summary = reconcile(write_statement([], raw=raw))
    assert summary["rows"] == 14 and summary["malformed_rows"] == 1
    assert summary["matched"] == 1 and summary["missing_in_ledger"] == 12


def test_a_quoted_cell_over_two_lines_is_still_one_row(world, write_statement, settled):
    raw = (
        HEADER.rstrip("\n")
        + ",note\n"
        + f'payment,pay_ok,,u1,100,1.00,EUR,settled,{settled},"first line\nsecond line"\n'
        + f"payment,pay_pts,,u1,50,1.00,EUR,settled,{settled},\n"
    )
    summary = reconcile(write_statement([], raw=raw))
    assert (summary["rows"], summary["matched"], summary["malformed_rows"]) == (2, 2, 0)
    assert SettlementRow.objects.get(run_id=summary["run_id"], payment_id="pay_pts").line == 4


def test_a_header_naming_a_column_twice_is_refused_as_ambiguous(world, write_statement, settled):
    raw = (
        "type,payment_id,reference,user_id,points,amount,currency,status,settled_at,points\n"
        f"payment,pay_ok,,u1,100,1.00,EUR,settled,{settled},5\n"
    )
    with pytest.raises(CommandError, match="points more than once"):
        reconcile(write_statement([], raw=raw))
    assert not SettlementRun.objects.exists()


@pytest.mark.parametrize("extreme", ["9999-12-31T23:30:00-05:00", "0001-01-01T00:30:00+01:00"])
def test_a_time_past_the_calendar_makes_its_row_malformed_and_the_rest_go_on(
    world, write_statement, settled, extreme
):
    raw = (
        HEADER
        + f"payment,pay_x,,u1,100,1.00,EUR,settled,{extreme}\n"
        + f"payment,pay_ok,,u1,100,1.00,EUR,settled,{settled}\n"
    )
    summary = reconcile(write_statement([], raw=raw))
    assert (summary["rows"], summary["matched"], summary["malformed_rows"]) == (2, 1, 1)
    malformed = SettlementRow.objects.get(run_id=summary["run_id"], line=2)
    assert "out of range" in malformed.detail
    assert SettlementRun.objects.get(pk=summary["run_id"]).status == "completed"


def test_a_time_with_an_offset_postgresql_refuses_is_matched_and_kept_in_utc(world, write_statement, settled):
    """Python reads offsets up to a day; PostgreSQL refuses one past 15:59. The
    same instant written as 21:56 behind UTC is still the payment's settlement."""
    instant = datetime.fromisoformat(settled.replace("Z", "+00:00"))
    far_west = instant.astimezone(timezone(-timedelta(hours=21, minutes=56))).isoformat()
    raw = HEADER + f"payment,pay_ok,,u1,100,1.00,EUR,settled,{far_west}\n"

    summary = reconcile(write_statement([], raw=raw))

    assert (summary["rows"], summary["matched"], summary["malformed_rows"]) == (1, 1, 0)
    row = SettlementRow.objects.get(run_id=summary["run_id"], payment_id="pay_ok")
    assert row.settled_at == instant
