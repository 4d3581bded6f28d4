import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backfill.models import ProviderEventDelivery
from backfill.reversals import csv_to_event_lines
from tests.helpers import firestore_client, put_wallets

HEADER = "payment_id,refund_id,chargeback_id,user_id,points,created\n"


def backfill(tmp_path, body, *options):
    path = tmp_path / "reversals.csv"
    path.write_text(HEADER + body)
    out = StringIO()
    call_command("backfill_reversals", str(path), "--json", *options, stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def paid(gateway):
    put_wallets(gateway, {"u1": (0, [])})
    gateway.append_entry("u1", "purchase-pay_1", {"amount": 100, "type": "purchase"})
    return gateway


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_reversals_from_the_csv_follow_the_replay_rules(tmp_path, paid):
    result = backfill(
        tmp_path,
        "pay_1,re_1,,u1,30,2026-11-20T10:00:00Z\n"  # partial refund
        "pay_1,,cb_1,u1,90,2026-11-21T10:00:00Z\n"  # more than is left: quarantined
        "pay_1,re_2,,u1,12.5,2026-11-22T10:00:00Z\n"  # not a whole number: never coerced
        "pay_1,re_3,cb_3,u1,5,2026-11-22T10:00:00Z\n"  # which is it?
        "pay_9,re_9,,u1,5,2026-11-22T10:00:00Z\n",  # its payment is not in the ledger
    )

    assert {k: result[k] for k in ("total", "applied", "quarantined", "deferred")} == {
        "total": 5,
        "applied": 1,
        "quarantined": 3,
        "deferred": 1,
    }
    reasons = dict(ProviderEventDelivery.objects.values_list("event_id", "reason"))
    assert "exceeds the 70 points left" in reasons["csv-cb_1"]
    assert "got '12.5'" in reasons["csv-re_2"]
    assert "exactly one of refund_id and chargeback_id" in reasons["csv-re_3"]
    assert firestore_client(paid.project).collection("wallets").document("u1").get().to_dict()["points"] == 70


@pytest.mark.django_db
def test_a_csv_without_the_expected_columns_is_refused(tmp_path, paid):
    path = tmp_path / "wrong.csv"
    path.write_text("id,amount\n1,2\n")
    with pytest.raises(CommandError, match="lacks the columns"):
        call_command("backfill_reversals", str(path))


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_header_with_a_byte_order_mark_is_read_as_excel_writes_it(tmp_path, paid):
    path = tmp_path / "excel.csv"
    path.write_bytes(("\ufeff" + HEADER + "pay_1,re_1,,u1,30,2026-11-20T10:00:00Z\n").encode("utf-8"))
    out = StringIO()

    call_command("backfill_reversals", str(path), "--json", stdout=out)

    assert json.loads(out.getvalue())["applied"] == 1
    assert firestore_client(paid.project).collection("wallets").document("u1").get().to_dict()["points"] == 70


def test_points_are_ascii_digits_with_an_optional_sign_and_nothing_else():
    rejected = []
    rows = [HEADER]
    cells = ["20", "+20", "-20", "²", "２０", "٣", "1_000", " 7 ", "9223372036854775807", "9" * 5000]
    rows += [f"pay_1,re_{n},,u1,{cell},2026-11-20T10:00:00Z\n" for n, cell in enumerate(cells)]

    points = [
        json.loads(line)["data"]["points"] for line in csv_to_event_lines(rows, rejected=rejected) if line
    ]

    assert points == [20, 20, -20, "²", "２０", "٣", "1_000", 7, 9223372036854775807, "9" * 5000]
    assert [line for line, _ in rejected] == [5, 6, 7, 8, 11]
    assert rejected[0][1] == "points '²' is not a whole number in ASCII digits"
    assert rejected[-1][1].startswith("points '99999")


@pytest.mark.django_db
@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.usefixtures("one_person_suffices")
def test_points_in_other_scripts_are_rejected_rows_with_their_line_and_the_file_goes_on(
    tmp_path, paid, dry_run
):
    body = (
        "pay_1,re_1,,u1,²,2026-11-20T10:00:00Z\n"  # superscript two: isdigit(), but int() fails
        "pay_1,re_2,,u1,２０,2026-11-20T10:00:00Z\n"  # full-width 20: int() would read 20
        "pay_1,re_3,,u1,٣,2026-11-20T10:00:00Z\n"  # Arabic-Indic 3: int() would read 3
        "pay_1,re_4,,u1,10,2026-11-20T10:00:00Z\n"
    )

    result = backfill(tmp_path, body, *(["--dry-run"] if dry_run else []))

    assert {k: result[k] for k in ("total", "applied", "quarantined")} == {
        "total": 4,
        "applied": 1,
        "quarantined": 3,
    }
    assert result["rejected"] == [
        {"line": 2, "reason": "points '²' is not a whole number in ASCII digits"},
        {"line": 3, "reason": "points '２０' is not a whole number in ASCII digits"},
        {"line": 4, "reason": "points '٣' is not a whole number in ASCII digits"},
    ]
    if not dry_run:
        assert (
            firestore_client(paid.project).collection("wallets").document("u1").get().to_dict()["points"]
            == 90
        )
        quarantined = ProviderEventDelivery.objects.filter(status="quarantined").order_by("line")
        assert [(d.line, d.event_id) for d in quarantined] == [
            (2, "csv-re_1"),
            (3, "csv-re_2"),
            (4, "csv-re_3"),
        ]
        assert "got '２０'" in quarantined[1].reason


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_delivery_lines_are_the_csv_lines_even_across_quoted_newlines_and_blank_lines(tmp_path, paid):
    body = (
        "\n"  # line 2: blank
        'pay_1,re_1,,u1,5,"2026-11-20T10:00:00Z"\n'  # line 3
        'pay_1,re_2,,"u1\nsecond line",5,2026-11-20T10:00:00Z\n'  # lines 4-5: a quoted newline
        "pay_1,re_3,,u1,x,2026-11-20T10:00:00Z\n"  # line 6
    )

    result = backfill(tmp_path, body)

    assert result["rejected"] == [{"line": 6, "reason": "points 'x' is not a whole number in ASCII digits"}]
    lines = dict(ProviderEventDelivery.objects.values_list("event_id", "line"))
    assert lines == {"csv-re_1": 3, "csv-re_2": 4, "csv-re_3": 6}
