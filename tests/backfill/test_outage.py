"""A Firestore outage during a replay: each call is retried with backoff up to the
gateway's deadline, then the item is `failed` with the error and the run goes
on; once Firestore is back, re-running the failed items applies them, once."""

import json

import pytest

from backfill import file_replay, run_requests
from backfill.models import EventStatus, ProviderEventDelivery
from devtools.emulator import free_port
from revassure.firestore import FirestoreGateway
from tests.helpers import firestore_client, put_wallets


def line(event_id, kind="payment.succeeded", **data):
    return json.dumps({"id": event_id, "type": kind, "created": "2026-11-20T10:00:00Z", "data": data})


EXPORT = [
    line("evt_1", payment_id="pay_1", user_id="u1", points=100),
    line("evt_2", payment_id="pay_2", user_id="u2", points=40),
    line("evt_r", "payment.refunded", payment_id="pay_0", user_id="u1", points=5, refund_id="re_0"),
]


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_items_fail_visibly_during_an_outage_and_apply_after_it(
    gateway, firestore_project, monkeypatch, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"u1": (10, [10]), "u2": (0, [])})
    gateway.append_entry("u1", "purchase-pay_0", {"amount": 20, "type": "purchase"})
    # Nothing listens on this port: every call fails with UNAVAILABLE.
    with monkeypatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
        down = FirestoreGateway(firestore_project, retry_deadline=1.0, call_timeout=1.0)
        down.connect()  # bound to the dead address now

    migration = run_requests.start_replay(path="export.jsonl", dry_run=False)
    migration = file_replay.run_replay(migration, EXPORT, gateway=down)

    assert (migration.status, migration.total, migration.failed, migration.applied) == ("completed", 3, 3, 0)
    # Retried with backoff until the gateway's deadline, then given up, saying why
    # (payments in a batch and a reversal on its own alike).
    reasons = list(ProviderEventDelivery.objects.values_list("status", "reason"))
    assert {status for status, _ in reasons} == {EventStatus.FAILED}
    for _, reason in reasons:
        assert reason.startswith("FirestoreUnavailable: Timeout of 1.0s exceeded, last exception: 503"), (
            reason
        )
    assert (
        firestore_client(gateway.project).collection("wallets").document("u1").get().to_dict()["points"] == 30
    )

    with django_capture_on_commit_callbacks(execute=True):
        rerun = run_requests.request_stored_replay()  # Firestore is back: "Re-run quarantined and failed"

    rerun.refresh_from_db()
    assert (rerun.status, rerun.total, rerun.applied, rerun.failed) == ("completed", 3, 3, 0)
    wallets = firestore_client(gateway.project).collection("wallets")
    assert wallets.document("u1").get().to_dict()["points"] == 30 + 100 - 5
    assert wallets.document("u2").get().to_dict()["points"] == 40
