import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backfill.models import ProviderEventDelivery
from tests.helpers import put_wallets

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
    assert paid.client.collection("wallets").document("u1").get().to_dict()["points"] == 70


@pytest.mark.django_db
def test_a_csv_without_the_expected_columns_is_refused(tmp_path, paid):
    path = tmp_path / "wrong.csv"
    path.write_text("id,amount\n1,2\n")
    with pytest.raises(CommandError, match="lacks the columns"):
        call_command("backfill_reversals", str(path))
