"""seed_demo --statement: a statement that matches the demo's purchases but for
a handful of breaks of each kind, as `make demo` imports it."""

import io
import json

from django.core.management import call_command

from backfill import services as intake
from backfill.models import EventStatus, ProviderEventDelivery
from settlement.models import OUTCOMES, SettlementRun


def test_the_demo_statement_has_each_kind_of_break(gateway, tmp_path):
    path = tmp_path / "paynow-statement.csv"
    out = io.StringIO()
    call_command("seed_demo", "--wallets", "40", "--statement", str(path), "--json", stdout=out)
    seeded = json.loads(out.getvalue())["statement"]
    # The webhook drain (a minute's sweep in `make demo`) leaves the deliveries
    # whose apply failed to a person's replay: the breaks they make stay.
    intake.drain_webhooks(gateway=gateway)
    unapplied = ProviderEventDelivery.objects.filter(event_id__startswith="evt_demo_stored_")
    assert sorted(unapplied.values_list("status", flat=True)) == [EventStatus.FAILED] * 3
    out = io.StringIO()
    call_command("reconcile_settlement", str(path), "--json", stdout=out)
    summary = json.loads(out.getvalue())
    for outcome in OUTCOMES:
        assert summary[outcome] >= 1, outcome
        assert summary[outcome] == seeded[outcome], outcome
    assert summary["malformed_rows"] == 3
    assert summary["rows"] == sum(summary[o] for o in OUTCOMES if o != "missing_at_provider") + 3
    run = SettlementRun.objects.get()
    assert run.status == "completed" and run.chain_seq == 1
