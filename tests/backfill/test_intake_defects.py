"""Regression tests for deliveries the intake once accepted and then could not use.

Each signed delivery is stored and answered; one that cannot be used is
quarantined at intake with the reason, by the same rules the webhook, a replay
file and a stored replay use, and never fails the items around it.
"""

import json
import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from backfill import events, run_requests
from backfill.models import EventStatus, MigrationStatus, ProviderEventDelivery
from tests.helpers import firestore_client, put_wallets

SECRET = "whsec_test_only_current"
INT64_MAX = 2**63 - 1


@pytest.fixture(autouse=True)
def secrets(settings):
    settings.PAYNOW_WEBHOOK_SECRETS = [SECRET]


def payment(event_id, *, user="u1", payment_id="pay_1", points=100):
    data = {"payment_id": payment_id, "user_id": user, "points": points}
    return {"id": event_id, "type": "payment.succeeded", "created": "2026-11-20T10:00:00Z", "data": data}


def deliver(client, raw: bytes):
    header = events.sign(raw, SECRET, int(time.time()))
    return client.post(
        reverse("webhook-paynow"), data=raw, content_type="application/json", HTTP_PAYNOW_SIGNATURE=header
    )


def points(gateway, uid):
    return firestore_client(gateway.project).collection("wallets").document(uid).get().to_dict()["points"]


@pytest.fixture
def send(client, gateway, django_capture_on_commit_callbacks):
    put_wallets(gateway, {"u1": (0, [])})

    def send_raw(raw: bytes):
        with django_capture_on_commit_callbacks(execute=True):
            return deliver(client, raw)

    return send_raw


def replay_file(tmp_path, raw_lines: list[bytes], *options):
    export = tmp_path / "export.jsonl"
    export.write_bytes(b"\n".join(raw_lines) + b"\n")
    out = StringIO()
    call_command("replay_webhooks", str(export), "--json", *options, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_a_webhook_body_with_a_utf8_bom_is_applied_like_any_other(send, gateway):
    response = send(b"\xef\xbb\xbf" + json.dumps(payment("evt_bom")).encode())

    assert response.status_code == 202
    assert ProviderEventDelivery.objects.get().status == EventStatus.APPLIED
    assert points(gateway, "u1") == 100


@pytest.mark.django_db
def test_a_webhook_body_in_utf16_is_quarantined_at_intake_not_left_received(send, gateway):
    response = send(json.dumps(payment("evt_16")).encode("utf-16"))

    assert response.status_code == 422
    delivery = ProviderEventDelivery.objects.get()
    assert delivery.status == EventStatus.QUARANTINED
    assert "UTF-8" in delivery.reason
    assert points(gateway, "u1") == 0


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_stored_delivery_that_no_longer_parses_is_quarantined_and_the_stored_replay_goes_on(
    send, gateway, django_capture_on_commit_callbacks
):
    send(json.dumps(payment("evt_ok_1", payment_id="pay_a")).encode())
    # A row stored by an older intake whose rules were looser: it must not block anything.
    bad = ProviderEventDelivery.objects.create(
        source="webhook", raw="\ufeff" + "{broken", event_id="evt_bad", status=EventStatus.RECEIVED
    )
    good = ProviderEventDelivery.objects.create(
        source="webhook",
        raw=json.dumps(payment("evt_ok_2", payment_id="pay_b")),
        event_id="evt_ok_2",
        status=EventStatus.RECEIVED,
    )

    with django_capture_on_commit_callbacks(execute=True):
        migration = run_requests.request_stored_replay(actor=None)
    migration.refresh_from_db()

    assert migration.status == MigrationStatus.COMPLETED
    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.status == EventStatus.QUARANTINED and "not JSON" in bad.reason
    assert good.status == EventStatus.APPLIED
    assert points(gateway, "u1") == 200
    assert migration.total == migration.applied + migration.quarantined == 2


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_bom_line_in_a_replay_file_is_planned_and_applied_alike(tmp_path, gateway):
    put_wallets(gateway, {"u1": (0, [])})
    lines = [b"\xef\xbb\xbf" + json.dumps(payment("evt_1")).encode()]

    planned = replay_file(tmp_path, lines, "--dry-run")
    done = replay_file(tmp_path, lines)

    assert planned["applied"] == done["applied"] == 1
    assert points(gateway, "u1") == 100


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_an_out_of_range_amount_is_quarantined_and_the_rest_of_the_batch_applied(tmp_path, gateway):
    put_wallets(gateway, {"u1": (0, [])})
    lines = [json.dumps(payment("evt_big", payment_id="pay_big", points=INT64_MAX + 1)).encode()]
    lines += [json.dumps(payment(f"evt_{n}", payment_id=f"pay_{n}", points=10)).encode() for n in range(4)]

    planned = replay_file(tmp_path, lines, "--dry-run")
    done = replay_file(tmp_path, lines)
    again = replay_file(tmp_path, lines)

    assert (planned["applied"], planned["quarantined"]) == (4, 1)
    assert (done["applied"], done["quarantined"], done["failed"]) == (4, 1, 0)
    assert (again["duplicate"], again["quarantined"], again["failed"]) == (4, 1, 0)
    assert points(gateway, "u1") == 40
    reason = ProviderEventDelivery.objects.filter(event_id="evt_big").first().reason
    assert "out of range" in reason


@pytest.mark.django_db
def test_an_out_of_range_amount_on_the_webhook_is_refused_at_intake(send, gateway):
    response = send(json.dumps(payment("evt_big", points=INT64_MAX + 1)).encode())

    assert response.status_code == 422
    assert "out of range" in response.json()["reason"]
    assert points(gateway, "u1") == 0


@pytest.mark.django_db
def test_a_created_time_past_the_calendar_in_utc_is_refused_and_a_far_offset_is_applied(send, gateway):
    past = {**payment("evt_past"), "created": "0001-01-01T00:30:00+01:00"}
    refused = send(json.dumps(past).encode())
    assert refused.status_code == 422
    assert "out of range" in refused.json()["reason"]

    # PostgreSQL refuses an offset past 15:59; Python, and so the provider's JSON, allows a day.
    far_west = {**payment("evt_west", points=7), "created": "2026-11-20T01:00:00-21:56"}
    assert send(json.dumps(far_west).encode()).status_code in (200, 202)
    assert points(gateway, "u1") == 7


@pytest.mark.django_db
def test_deeply_nested_json_is_stored_and_quarantined_not_a_500(send):
    response = send(b"[" * 100_000)

    assert response.status_code == 422
    delivery = ProviderEventDelivery.objects.get()
    assert delivery.status == EventStatus.QUARANTINED
    assert "nested" in delivery.reason


@pytest.mark.django_db
def test_an_event_id_with_nul_is_stored_and_quarantined(send):
    body = json.dumps(payment("evt_\u0000x")).encode()

    response = send(body)

    assert response.status_code == 422
    delivery = ProviderEventDelivery.objects.get()
    assert delivery.status == EventStatus.QUARANTINED
    assert "\x00" not in delivery.event_id


@pytest.mark.django_db
def test_an_id_with_a_trailing_newline_is_not_a_valid_identity(send, gateway):
    response = send(json.dumps(payment("evt_1", payment_id="pay_1\n")).encode())

    assert response.status_code == 422
    assert points(gateway, "u1") == 0


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_unusable_lines_in_a_replay_file_never_abort_the_migration(tmp_path, gateway):
    put_wallets(gateway, {"u1": (0, [])})
    lines = [
        b"[" * 100_000,
        json.dumps(payment("evt_\u0000x", payment_id="pay_n")).encode(),
        json.dumps(payment("evt_ok", payment_id="pay_ok")).encode(),
    ]

    result = replay_file(tmp_path, lines)

    assert (result["total"], result["quarantined"], result["applied"]) == (3, 2, 1)
    assert points(gateway, "u1") == 100
