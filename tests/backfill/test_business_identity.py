"""A payment, refund or chargeback is credited once across the whole ledger, not
once per wallet: the same payment id sent for two users credits the first and
quarantines the second, and the completeness check finds such doubles."""

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from backfill import events
from backfill.intake import store_delivery
from backfill.models import EventStatus, ProviderEventDelivery
from tests.helpers import firestore_client, put_wallets

SECRET = "whsec_test_only_current"


@pytest.fixture(autouse=True)
def secrets(settings):
    settings.PAYNOW_WEBHOOK_SECRETS = [SECRET]


def payment(event_id, user, *, payment_id="pay_77", points=500):
    data = {"payment_id": payment_id, "user_id": user, "points": points}
    return {"id": event_id, "type": "payment.succeeded", "created": "2026-11-20T10:00:00Z", "data": data}


def points(gateway, uid):
    return firestore_client(gateway.project).collection("wallets").document(uid).get().to_dict()["points"]


def ledger(gateway, uid):
    return [
        d.id
        for d in firestore_client(gateway.project)
        .collection("wallets")
        .document(uid)
        .collection("ledger")
        .stream()
    ]


@pytest.fixture
def wallets(gateway):
    put_wallets(gateway, {"xa": (0, []), "xb": (0, [])})
    return gateway


@pytest.mark.django_db
def test_the_same_payment_for_two_users_by_webhook_credits_only_the_first(
    client, wallets, django_capture_on_commit_callbacks
):
    for event_id, user in (("evt_a", "xa"), ("evt_b", "xb")):
        raw = json.dumps(payment(event_id, user)).encode()
        with django_capture_on_commit_callbacks(execute=True):
            client.post(
                reverse("webhook-paynow"),
                data=raw,
                content_type="application/json",
                HTTP_PAYNOW_SIGNATURE=events.sign(raw, SECRET, int(time.time())),
            )

    first, second = ProviderEventDelivery.objects.order_by("pk")
    assert first.status == EventStatus.APPLIED
    assert second.status == EventStatus.QUARANTINED
    assert "purchase-pay_77" in second.reason and "xa" in second.reason
    assert (points(wallets, "xa"), points(wallets, "xb")) == (500, 0)
    assert ledger(wallets, "xb") == []


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_replay_file_plans_and_applies_the_same_payment_for_two_users_once(tmp_path, wallets):
    export = tmp_path / "export.jsonl"
    export.write_text(json.dumps(payment("evt_a", "xa")) + "\n" + json.dumps(payment("evt_b", "xb")) + "\n")

    results = []
    for options in (["--dry-run"], []):
        out = StringIO()
        call_command("replay_webhooks", str(export), "--json", *options, stdout=out)
        results.append(json.loads(out.getvalue()))

    for result in results:
        assert (result["applied"], result["quarantined"]) == (1, 1)
    assert (points(wallets, "xa"), points(wallets, "xb")) == (500, 0)


@pytest.mark.django_db
def test_the_completeness_check_finds_a_payment_credited_to_two_wallets(wallets):
    # Existing data from before the identity was global: both wallets hold pay_77.
    for uid, event_id in (("xa", "evt_a"), ("xb", "evt_b")):
        wallets.append_entry(uid, "purchase-pay_77", {"type": "purchase", "amount": 500})
        delivery = store_delivery(json.dumps(payment(event_id, uid)).encode(), source="webhook")
        ProviderEventDelivery.objects.filter(pk=delivery.pk).update(status=EventStatus.APPLIED)

    out = StringIO()
    with pytest.raises(CommandError, match="credited to more than one wallet"):
        call_command("check_completeness", "--json", stdout=out)

    result = json.loads(out.getvalue())
    assert result["gaps"] == 0
    assert result["doubles"] == [{"entry_id": "purchase-pay_77", "wallets": ["xa", "xb"]}]
