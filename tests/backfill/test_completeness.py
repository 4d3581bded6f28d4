import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from backfill.models import EventStatus, ProviderEventDelivery
from backfill.services import apply_delivery
from tests.helpers import firestore_client, put_wallets
from tests.helpers import stored_event as stored


@pytest.fixture
def gap(gateway):
    """Two payments stored; one applied, one never (its worker was lost)."""
    put_wallets(gateway, {"u1": (0, [])})
    apply_delivery(stored("evt_1", payment="pay_1").pk, gateway=gateway)
    return stored("evt_2", payment="pay_2", points=5)


@pytest.mark.django_db
def test_the_check_lists_stored_events_without_their_ledger_entry(gateway, gap):
    out = StringIO()
    with pytest.raises(CommandError, match="1 stored events have no ledger entry"):
        call_command("check_completeness", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["gaps"] == 1 and result["items"][0]["entry_id"] == "purchase-pay_2"


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_ops_replay_every_gap_in_one_click(client, gateway, gap, ops, django_capture_on_commit_callbacks):
    client.force_login(ops)
    url = reverse("admin:backfill_completeness")
    page = client.get(url).content.decode()
    assert "1 stored payment(s) or reversal(s) have no ledger entry" in page and "u1 / purchase-pay_2" in page

    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"replay": "Replay all gaps"})

    assert ProviderEventDelivery.objects.get(pk=gap.pk).status == EventStatus.APPLIED
    assert (
        firestore_client(gateway.project).collection("wallets").document("u1").get().to_dict()["points"]
        == 105
    )
    assert "Every stored payment and reversal has its ledger entry" in client.get(url).content.decode()


@pytest.mark.django_db
def test_only_ops_may_replay_the_gaps(client, gateway, gap, reviewer):
    client.force_login(reviewer)
    assert client.get(reverse("admin:backfill_completeness")).status_code == 200
    assert client.post(reverse("admin:backfill_completeness")).status_code == 403
