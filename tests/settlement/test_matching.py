"""Settlement matching on the emulator: each outcome alone and all together,
totals that add up, the same file twice, a dry run that keeps nothing."""

import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from settlement import reports
from settlement.models import OUTCOMES, Outcome, SettlementRow, SettlementRun
from tests.helpers import firestore_client, without_immutability_triggers

KEYS = [
    "run_id",
    "rows",
    "matched",
    "missing_in_ledger",
    "missing_at_provider",
    "points_mismatch",
    "user_mismatch",
    "unreversed",
    "duplicate_in_statement",
    "not_settled",
    "malformed_rows",
    "checksum",
]


def reconcile(path, *args):
    out, err = _Out(), _Out()
    call_command("reconcile_settlement", str(path), "--json", *args, stdout=out, stderr=err)
    return json.loads(out.text), err.text


class _Out:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def statement_outcomes(summary):
    return sum(summary[name] for name in OUTCOMES if name != "missing_at_provider")


def test_a_statement_with_every_outcome_prints_exactly_the_contract_keys_and_adds_up(
    world, write_statement, every_outcome
):
    summary, _ = reconcile(write_statement(every_outcome))

    assert list(summary) == KEYS
    assert summary["rows"] == 14
    assert {name: summary[name] for name in KEYS[2:-1]} == {
        "matched": 4,
        "missing_in_ledger": 2,
        "missing_at_provider": 1,
        "points_mismatch": 1,
        "user_mismatch": 1,
        "unreversed": 1,
        "duplicate_in_statement": 1,
        "not_settled": 1,
        "malformed_rows": 3,
    }
    # Every statement row is accounted for, once.
    assert summary["rows"] == statement_outcomes(summary) + summary["malformed_rows"]
    run = SettlementRun.objects.get(pk=summary["run_id"])
    assert run.status == "completed" and run.checksum == summary["checksum"] and run.chain_seq == 1
    assert run.results.exclude(line=None).count() == summary["rows"]


def test_each_row_says_what_it_came_to_and_why(world, write_statement, every_outcome):
    summary, _ = reconcile(write_statement(every_outcome))
    rows = {r.line: r for r in SettlementRow.objects.filter(run_id=summary["run_id"]).exclude(line=None)}
    # Line 1 is the header: the n-th row is on line n + 1.
    assert rows[4].outcome == Outcome.POINTS_MISMATCH and rows[4].ledger_amount == 50
    assert "+60" in rows[4].detail and "+50" in rows[4].detail
    assert rows[5].outcome == Outcome.USER_MISMATCH and rows[5].ledger_uid == "u2"
    assert rows[6].outcome == Outcome.NOT_SETTLED and "pending" in rows[6].detail
    assert rows[7].outcome == Outcome.MATCHED  # pending and not credited: they agree
    assert rows[8].outcome == Outcome.MISSING_IN_LEDGER and rows[8].replayable and rows[8].delivery_id
    assert rows[9].outcome == Outcome.MISSING_IN_LEDGER and not rows[9].replayable
    assert "no delivery" in rows[9].detail
    assert rows[10].outcome == Outcome.UNREVERSED and rows[10].entry_id == "refund-re_1"
    assert rows[11].outcome == Outcome.DUPLICATE_IN_STATEMENT and "line 2" in rows[11].detail
    assert [rows[n].outcome for n in (12, 13, 14)] == [Outcome.MALFORMED] * 3
    assert "ASCII digits" in rows[12].detail
    assert "amount '1,5'" in rows[13].detail
    assert "unknown type 'transfer'" in rows[14].detail
    gone = SettlementRow.objects.get(run_id=summary["run_id"], line=None)
    assert gone.outcome == Outcome.MISSING_AT_PROVIDER and gone.payment_id == "pay_gone"
    assert gone.user_id == "u3" and gone.points == 40 and gone.delivery.event_id == "evt_gone"


def test_totals_of_points_and_money_per_outcome_and_currency(world, write_statement, every_outcome):
    summary, _ = reconcile(write_statement(every_outcome))
    run = SettlementRun.objects.get(pk=summary["run_id"])
    assert run.totals["missing_in_ledger"] == {"points": 170, "money": {"EUR": "17"}}
    assert run.totals["unreversed"] == {"points": 50, "money": {"EUR": "-5"}}
    assert run.totals["missing_at_provider"] == {"points": 40, "money": {}}
    stake = {s["outcome"]: s for s in reports.at_stake(run)}
    assert stake["points_mismatch"]["money"] == [("EUR", "6")]
    assert Decimal(run.totals["matched"]["money"]["EUR"]) == Decimal("29.00")


@pytest.mark.parametrize(
    ("row", "outcome"),
    [
        ({"type": "payment", "payment_id": "pay_ok", "user_id": "u1", "points": 100}, "matched"),
        ({"type": "payment", "payment_id": "pay_pts", "user_id": "u1", "points": 51}, "points_mismatch"),
        ({"type": "payment", "payment_id": "pay_usr", "user_id": "u3", "points": 70}, "user_mismatch"),
        ({"type": "payment", "payment_id": "pay_miss", "user_id": "u1", "points": 80}, "missing_in_ledger"),
        (
            {
                "type": "chargeback",
                "payment_id": "pay_ref",
                "reference": "cb_9",
                "user_id": "u3",
                "points": 9,
            },
            "unreversed",
        ),
        (
            {"type": "payment", "payment_id": "pay_ok", "user_id": "u1", "points": 100, "status": "failed"},
            "not_settled",
        ),
    ],
)
def test_each_outcome_alone(world, write_statement, settled, row, outcome):
    full = {"amount": "1.00", "currency": "EUR", "status": "settled", "settled_at": settled, **row}
    # The period is given so the other direction (applied payments not in the
    # statement) looks at a day with none.
    summary, _ = reconcile(
        write_statement([full]), "--period", "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z"
    )
    assert summary["rows"] == 1 and summary[outcome] == 1
    assert statement_outcomes(summary) == 1 and summary["missing_at_provider"] == 0


def test_a_duplicate_and_a_malformed_row_alone(world, write_statement, settled):
    row = {
        "type": "payment",
        "payment_id": "pay_ok",
        "user_id": "u1",
        "points": 100,
        "amount": "1",
        "currency": "EUR",
        "status": "settled",
        "settled_at": settled,
    }
    bad = {**row, "payment_id": "pay_x", "settled_at": "2026-11-20T10:00:00"}  # no time zone
    summary, _ = reconcile(write_statement([row, row, bad]))
    assert (summary["matched"], summary["duplicate_in_statement"], summary["malformed_rows"]) == (1, 1, 1)
    malformed = SettlementRow.objects.get(run_id=summary["run_id"], outcome=Outcome.MALFORMED)
    assert malformed.line == 4 and "no time zone" in malformed.detail


def test_missing_at_provider_alone_and_the_period_given(world, write_statement, settled):
    row = {
        "type": "payment",
        "payment_id": "pay_ok",
        "user_id": "u1",
        "points": 100,
        "amount": "1",
        "currency": "EUR",
        "status": "settled",
        "settled_at": settled,
    }
    period = ("2026-01-01T00:00:00Z", "2030-01-01T00:00:00Z")
    summary, _ = reconcile(write_statement([row]), "--period", *period)
    # Every credited payment but pay_ok is in the period and missing from this statement.
    assert summary["missing_at_provider"] == 5
    narrow, _ = reconcile(write_statement([row]), "--period", "2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z")
    assert narrow["missing_at_provider"] == 0


def test_a_malformed_row_never_stops_the_rows_after_it(world, write_statement, settled):
    good = f"payment,pay_ok,,u1,100,1.00,EUR,settled,{settled}\n"
    raw = (
        "type,payment_id,reference,user_id,points,amount,currency,status,settled_at,note\n"
        f"payment,pay_ok,,u1,100,1.00,EUR,settled,{settled},kept and ignored\n"
        "payment,pay_a,,u1,100\n"  # too few fields
        f'payment,pay_b,,u1,100,1.00,EUR,settled,{settled},"{"x" * 200_000}"\n'  # a cell past csv's limit
        f"payment,pay_c,,u1,+5,1.00,eur,settled,{settled},\n"  # lower-case currency
        f"payment,pay_d,,u1,5,1.1234567,EUR,settled,{settled},\n"  # too many decimals
        f"payment,pay_e,,u1,99999999999999999999,1,EUR,settled,{settled},\n"  # past 64 bits
        f"payment,pay_f,,u1,0,1,EUR,settled,{settled},\n"  # not positive
        f"payment,pay_g,re_1,u1,5,1,EUR,settled,{settled},\n"  # payment with a reference
        f"refund,pay_h,,u1,5,1,EUR,settled,{settled},\n"  # refund without one
        f"payment,pay_i,,u1,5,1,EUR,settled,,\n" + good.replace("\n", ",\n")  # settled without a time
    )
    summary, _ = reconcile(write_statement([], raw=raw))
    assert summary["rows"] == 11 and summary["malformed_rows"] == 9
    assert summary["matched"] == 1 and summary["duplicate_in_statement"] == 1
    lines = dict(
        SettlementRow.objects.filter(run_id=summary["run_id"], outcome="malformed").values_list(
            "line", "detail"
        )
    )
    assert sorted(lines) == list(range(3, 12))
    assert "9 fields where the header has 10" in lines[3] or "5 fields" in lines[3]
    assert "field larger than field limit" in lines[4]
    assert "currency 'eur'" in lines[5]
    assert "more than 6 decimal places" in lines[6]
    assert "out of range" in lines[7]
    assert "positive" in lines[8]
    assert "reference must be empty" in lines[9]
    assert "malformed reference" in lines[10]
    assert "needs its settled_at" in lines[11]


def test_a_file_that_is_not_a_statement_is_refused_and_nothing_is_kept(world, write_statement):
    path = write_statement([], raw="payment_id,user_id,points\npay_1,u1,5\n")
    with pytest.raises(CommandError, match="lacks the columns type, reference"):
        reconcile(path)
    assert not SettlementRun.objects.exists()


def test_the_same_file_twice_is_recognised_and_linked_to_the_earlier_run(
    world, write_statement, every_outcome
):
    path = write_statement(every_outcome)
    first, first_err = reconcile(path)
    second, second_err = reconcile(path)
    assert first_err == ""
    assert f"imported before as settlement run {first['run_id']}" in second_err
    run = SettlementRun.objects.get(pk=second["run_id"])
    assert run.repeat_of_id == first["run_id"] and run.file_sha256 == run.repeat_of.file_sha256
    assert run.chain_seq == 2 and run.previous_checksum == first["checksum"]


def test_a_dry_run_keeps_nothing_and_writes_nothing_to_firestore(world, write_statement, every_outcome):
    path = write_statement(every_outcome)
    dry, _ = reconcile(path, "--dry-run")
    assert dry["run_id"] is None and dry["checksum"] is None
    assert dry["rows"] == 14 and dry["missing_in_ledger"] == 2 and dry["missing_at_provider"] == 1
    assert not SettlementRun.objects.exists() and not SettlementRow.objects.exists()
    assert list(world.stream_settlement_reports()) == []
    real, _ = reconcile(path)
    assert {k: real[k] for k in KEYS[1:-1]} == {k: dry[k] for k in KEYS[1:-1]}


def test_the_report_is_sealed_mirrored_and_verified(world, write_statement, every_outcome):
    summary, _ = reconcile(write_statement(every_outcome))
    mirrored = dict(world.stream_settlement_reports())
    assert mirrored[str(summary["run_id"])]["checksum"] == summary["checksum"]
    out = _Out()
    call_command("verify_reports", stdout=out)
    assert "verified" in out.text
    # An edit of a sealed row is found (by an intruder who first dropped the database's guards).
    without_immutability_triggers("settlement_settlementrow")
    SettlementRow.objects.filter(run_id=summary["run_id"], line=4).update(points=61)
    with pytest.raises(CommandError):
        call_command("verify_reports", stdout=_Out(), stderr=_Out())


def test_verify_compares_the_settlement_mirror_field_by_field_and_row_by_row(
    world, write_statement, every_outcome
):
    """Issue 27 item 8: counts and a row's outcome changed in the mirror, and a row
    deleted from it, with the checksum left alone: each named, exit 2."""
    summary, _ = reconcile(write_statement(every_outcome))
    run_id = str(summary["run_id"])
    mirror = firestore_client(world.project).collection("settlementReports").document(run_id)
    mirror.update({"matched": 0, "points_mismatch": 0})
    rows = [snap.id for snap in mirror.collection("rows").stream()]
    mirror.collection("rows").document(rows[0]).update({"outcome": "matched"})
    mirror.collection("rows").document(rows[1]).delete()
    err = _Out()
    with pytest.raises(CommandError) as raised:
        call_command("verify_reports", stdout=_Out(), stderr=err)
    assert raised.value.returncode == 2
    run = SettlementRun.objects.get(pk=summary["run_id"])
    first = SettlementRow.objects.get(pk=rows[0])
    prefix = f"run settlement {run_id}: Firestore mirror differs from the report: "
    assert prefix + f"matched is 0, the report has {run.matched}" in err.text
    assert prefix + f"points_mismatch is 0, the report has {run.points_mismatch}" in err.text
    assert prefix + f'row {rows[0]}: outcome is "matched", the report has "{first.outcome}"' in err.text
    assert prefix + f"row {rows[1]} is missing" in err.text
