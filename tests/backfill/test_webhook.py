import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import models as django_models
from django.urls import reverse

from backfill.events import sign
from backfill.models import EventStatus, ProviderEventDelivery, RejectedWebhook
from tests.helpers import firestore_client, put_wallets

SECRET = "whsec_test_only_current"
OLD_SECRET = "whsec_test_only_previous"


@pytest.fixture(autouse=True)
def secrets(settings):
    settings.PAYNOW_WEBHOOK_SECRETS = [SECRET, OLD_SECRET]


def event(event_id, kind="payment.succeeded", *, user="u1", payment="pay_1", points=100, **extra):
    data = {"payment_id": payment, "user_id": user, "points": points, **extra}
    return {"id": event_id, "type": kind, "created": "2026-11-20T10:00:00Z", "data": data}


def deliver(client, body, *, secret=SECRET, timestamp=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    header = sign(raw, secret, int(time.time()) if timestamp is None else timestamp)
    return client.post(
        reverse("webhook-paynow"), data=raw, content_type="application/json", HTTP_PAYNOW_SIGNATURE=header
    )


def ledger(gateway, uid):
    docs = firestore_client(gateway.project).collection("wallets").document(uid).collection("ledger").stream()
    return {d.id: d.to_dict()["amount"] for d in docs}


def points(gateway, uid):
    return firestore_client(gateway.project).collection("wallets").document(uid).get().to_dict()["points"]


@pytest.fixture
def send(client, gateway, django_capture_on_commit_callbacks):
    put_wallets(gateway, {"u1": (0, [])})

    def send_event(body, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return deliver(client, body, **kwargs)

    return send_event


@pytest.mark.django_db
def test_a_signed_payment_is_stored_raw_then_credited(send, gateway):
    response = send(event("evt_1"))

    assert response.status_code == 202
    delivery = ProviderEventDelivery.objects.get()
    assert json.loads(delivery.raw)["id"] == "evt_1"
    assert delivery.status == EventStatus.APPLIED
    assert ledger(gateway, "u1") == {"purchase-pay_1": 100}
    assert points(gateway, "u1") == 100


@pytest.mark.django_db
def test_a_resent_event_or_the_same_payment_under_another_id_never_credits_twice(send, gateway):
    send(event("evt_1"))
    send(event("evt_1"))
    send(event("evt_2"))  # same payment, another event id

    assert list(ProviderEventDelivery.objects.order_by("id").values_list("status", flat=True)) == [
        "applied",
        "duplicate",
        "duplicate",
    ]
    assert points(gateway, "u1") == 100


@pytest.mark.django_db
def test_a_refund_before_its_payment_waits_then_applies(send, gateway):
    send(event("evt_r", "payment.refunded", points=30, refund_id="re_1"))
    refund = ProviderEventDelivery.objects.get(event_id="evt_r")
    assert refund.status == EventStatus.DEFERRED and "not in the ledger yet" in refund.reason

    send(event("evt_p"))  # the drain that credits the payment tries the waiting refund again
    refund.refresh_from_db()
    assert refund.status == EventStatus.APPLIED

    assert ledger(gateway, "u1") == {"purchase-pay_1": 100, "refund-re_1": -30}
    assert points(gateway, "u1") == 70


@pytest.mark.django_db
def test_partial_refunds_apply_and_an_over_refund_is_quarantined(send, gateway):
    send(event("evt_p"))
    send(event("evt_r1", "payment.refunded", points=60, refund_id="re_1"))
    send(event("evt_r2", "payment.refunded", points=50, refund_id="re_2"))

    over = ProviderEventDelivery.objects.get(event_id="evt_r2")
    assert over.status == EventStatus.QUARANTINED
    assert "reversal of 50 exceeds the 40 points left of purchase-pay_1" in over.reason
    assert points(gateway, "u1") == 40


@pytest.mark.django_db
@pytest.mark.parametrize("allow, status, balance", [(False, "quarantined", 10), (True, "applied", -90)])
def test_a_chargeback_on_a_spent_balance_follows_the_setting(send, gateway, settings, allow, status, balance):
    settings.BACKFILL_ALLOW_NEGATIVE_BALANCE = allow
    send(event("evt_p"))
    gateway.append_entry("u1", "redemption-1", {"amount": -90, "type": "redemption"})

    send(event("evt_c", "payment.chargeback", points=100, chargeback_id="cb_1"))

    chargeback = ProviderEventDelivery.objects.get(event_id="evt_c")
    assert chargeback.status == status
    assert (
        "negative balances are not allowed" if not allow else "negative balances allowed"
    ) in chargeback.reason
    assert points(gateway, "u1") == balance


@pytest.mark.django_db
def test_an_unknown_user_is_quarantined(send, gateway):
    send(event("evt_x", user="nobody"))
    delivery = ProviderEventDelivery.objects.get()
    assert delivery.status == EventStatus.QUARANTINED and "unknown user 'nobody'" in delivery.reason


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, reason",
    [
        (b"{not json", "not JSON"),
        (event("evt_t", "payment.disputed"), "unknown event type 'payment.disputed'"),
        (event("evt_f", points=1.5), "points must be a positive integer, got 1.5"),
        (event("evt_n", points=-5), "points must be a positive integer, got -5"),
        (event("evt_m", "payment.refunded"), "missing or malformed refund_id"),
    ],
)
def test_a_well_signed_but_unusable_event_is_kept_with_the_reason(send, body, reason, gateway):
    response = send(body)

    assert response.status_code == 422
    assert reason in response.json()["reason"]
    delivery = ProviderEventDelivery.objects.get()
    assert delivery.status == EventStatus.QUARANTINED and reason in delivery.reason
    assert delivery.raw  # what the provider sent is kept
    assert points(gateway, "u1") == 0


@pytest.mark.django_db
def test_bad_and_expired_signatures_are_refused_and_nothing_is_stored(client, gateway):
    assert deliver(client, event("evt_1"), secret="whsec_wrong").status_code == 401
    assert deliver(client, event("evt_1"), timestamp=int(time.time()) - 301).status_code == 401
    assert deliver(client, event("evt_1"), timestamp=int(time.time()) + 301).status_code == 401
    unsigned = client.post(reverse("webhook-paynow"), data=b"{}", content_type="application/json")
    assert unsigned.status_code == 401
    assert not ProviderEventDelivery.objects.exists()


@pytest.mark.django_db
def test_the_previous_secret_still_verifies_during_a_rotation(send):
    assert send(event("evt_1"), secret=OLD_SECRET).status_code == 202


def test_a_signature_over_a_reserialised_body_does_not_verify():
    from backfill.events import BadSignature, verify_signature

    raw = b'{"id": "evt_1",  "type": "payment.succeeded"}'
    header = sign(raw, SECRET, int(time.time()))
    with pytest.raises(BadSignature):
        verify_signature(header, json.dumps(json.loads(raw)).encode(), [SECRET])


@pytest.mark.django_db
def test_a_signed_body_with_a_nul_byte_is_kept_and_quarantined(send):
    response = send(b'{"id": "evt_\x00"}')
    assert response.status_code == 422
    assert "\ufffd" in ProviderEventDelivery.objects.get().raw


@pytest.mark.django_db
def test_a_refused_request_is_kept_without_its_body_and_old_ones_go(client, settings):
    settings.REJECTED_WEBHOOK_RETENTION_DAYS = 30
    start = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    body = b'{"id": "evt_forged"}'
    for at in (start, start + timedelta(days=31)):
        with time_machine.travel(at, tick=False):
            refused = client.post(
                "/api/webhooks/paynow",
                data=body,
                content_type="application/json",
                HTTP_PAYNOW_SIGNATURE=sign(body, "an-old-secret", int(at.timestamp())),
            )
        assert refused.status_code == 401

    [kept] = RejectedWebhook.objects.all()  # the first is older than 30 days when the second comes
    assert kept.received_at == start + timedelta(days=31)
    assert (kept.body_bytes, kept.body_sha256) == (len(body), hashlib.sha256(body).hexdigest())
    assert kept.reason and kept.remote_addr == "127.0.0.1"


@pytest.mark.django_db
def test_the_intakes_own_insert_stores_every_field_as_save_would(send):
    """backfill.intake.insert writes its statement from the model's fields: a
    field added later goes in too, as save() would write it, and the delivery
    handed back is the stored row."""
    from django.db.models.signals import post_save, pre_save

    from backfill.intake import store_delivery

    at = datetime(2026, 11, 20, 10, 0, 5, 123456, tzinfo=UTC)
    with time_machine.travel(at, tick=False):
        stored = store_delivery(json.dumps(event("evt_9", payment="pay_9")).encode(), source="webhook")
        saved = ProviderEventDelivery(source="webhook", raw=stored.raw, event_id="evt_9")
        saved.event_type, saved.user_id, saved.entry_id = stored.event_type, stored.user_id, stored.entry_id
        saved.save()

    def row(pk):
        values = ProviderEventDelivery.objects.filter(pk=pk).values().get()
        return {k: v for k, v in values.items() if k != "id"}

    assert row(stored.pk) == row(saved.pk)
    assert row(stored.pk)["received_at"] == at
    parsed = ("payment.succeeded", "u1", "purchase-pay_9")
    assert (stored.event_type, stored.user_id, stored.entry_id) == parsed
    assert {k: getattr(stored, k) for k in row(stored.pk)} == row(stored.pk)
    stored.status = EventStatus.APPLIED
    stored.save()  # as loaded from the database: an update of its row, never a second row
    assert ProviderEventDelivery.objects.count() == 2
    assert ProviderEventDelivery.objects.get(pk=stored.pk).status == EventStatus.APPLIED
    # What the insert leaves out: a save() of the model's own, or receivers of its signals.
    assert ProviderEventDelivery.save is django_models.Model.save
    assert not pre_save.has_listeners(ProviderEventDelivery)
    assert not post_save.has_listeners(ProviderEventDelivery)
