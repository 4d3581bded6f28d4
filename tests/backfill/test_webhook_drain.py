"""Webhook deliveries applied in batches: a burst becomes one task, which applies
what waits in arrival order with the file replay's outcomes; one drainer at a
time; the waiting queue shows in the admin and the metrics."""

import json
import time
import uuid

import pytest
from django.db import OperationalError
from django.test import TestCase
from django.urls import reverse
from django_q.brokers import get_broker
from django_q.conf import Conf

from backfill import drain, file_replay, run_requests, services, tasks
from backfill.events import sign
from backfill.models import DataMigration, EventSource, EventStatus, MigrationStatus, ProviderEventDelivery
from revassure.firestore import FirestoreGateway
from tests.helpers import event_line, firestore_client, put_wallets

SECRET = "whsec_test_only_current"
WALLETS = {"u1": (0, []), "u2": (0, []), "u3": (0, [])}

# A burst as it comes after an outage: payments, a resend, one payment claimed
# for two wallets, a refund before its payment, an over-refund, a payment after
# a refund of the same wallet, an unknown user, a chargeback.
BURST = [
    event_line("evt_1", user="u1", payment="pay_1", points=100),
    event_line("evt_2", user="u2", payment="pay_2", points=40),
    event_line("evt_3p", user="u3", payment="pay_3", points=50),
    event_line("evt_1", user="u1", payment="pay_1", points=100),  # resent
    event_line("evt_3", user="u2", payment="pay_1", points=100),  # pay_1 again, another wallet
    event_line("evt_r4", "payment.refunded", user="u2", payment="pay_4", points=10, refund_id="re_4"),
    event_line("evt_4", user="u2", payment="pay_4", points=30),  # its payment, after the refund
    event_line("evt_r1", "payment.refunded", user="u1", payment="pay_1", points=30, refund_id="re_1"),
    event_line("evt_5", user="u1", payment="pay_5", points=7),  # after u1's refund
    event_line("evt_r2", "payment.refunded", user="u2", payment="pay_2", points=99, refund_id="re_2"),
    event_line("evt_6", user="nobody", payment="pay_6", points=5),
    event_line("evt_c3", "payment.chargeback", user="u3", payment="pay_3", points=20, chargeback_id="cb_3"),
    event_line("evt_7", user="u3", payment="pay_7", points=1),
]


@pytest.fixture(autouse=True)
def secrets(settings):
    settings.PAYNOW_WEBHOOK_SECRETS = [SECRET]


@pytest.fixture
def broker(monkeypatch):
    """A real broker queue of this test's own (the ORM's, or Redis with REDIS_URL):
    tasks are enqueued, not run, as in production until a worker takes them.
    (Requests commit as they would in production: see `deliver`.)"""
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "CLUSTER_NAME", f"drain-{uuid.uuid4().hex[:8]}")
    queue = get_broker()
    yield queue
    queue.purge_queue()


def deliver(client, line: str):
    """One signed delivery, with what runs after its commit (the wake-up) run."""
    raw = line.encode()
    header = sign(raw, SECRET, int(time.time()))
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(
            reverse("webhook-paynow"), data=raw, content_type="application/json", HTTP_PAYNOW_SIGNATURE=header
        )


def wallet_state(gateway):
    wallets = {}
    for doc in firestore_client(gateway.project).collection("wallets").stream():
        entries = {e.id: e.to_dict()["amount"] for e in doc.reference.collection("ledger").stream()}
        wallets[doc.id] = (doc.to_dict()["points"], entries)
    return wallets


@pytest.mark.django_db
def test_a_burst_is_one_task_that_applies_everything_as_the_file_replay_does(
    client, gateway, firestore_project, broker
):
    put_wallets(gateway, WALLETS)
    answers = [deliver(client, line).status_code for line in BURST]
    assert answers == [202] * len(BURST)
    assert broker.queue_size() == 1, "a burst enqueues one drain, not a task per delivery"
    assert drain.queue_state()[0] == len(BURST)

    handled = tasks.drain_webhooks()  # what the worker that takes the task runs

    assert handled == len(BURST)
    assert drain.queue_state() == (0, 0.0)
    webhook = list(
        ProviderEventDelivery.objects.filter(source=EventSource.WEBHOOK)
        .order_by("pk")
        .values_list("event_id", "status")
    )

    # The same events replayed from a file, into a Firestore of their own.
    replayed_gateway = FirestoreGateway(f"{firestore_project}-file")
    put_wallets(replayed_gateway, WALLETS)
    migration = run_requests.start_replay(path="burst.jsonl", dry_run=False)
    file_replay.run_replay(migration, BURST, gateway=replayed_gateway)
    replayed = list(migration.deliveries.order_by("line").values_list("event_id", "status"))

    assert webhook == replayed
    assert webhook == [
        ("evt_1", "applied"),
        ("evt_2", "applied"),
        ("evt_3p", "applied"),
        ("evt_1", "duplicate"),
        ("evt_3", "quarantined"),  # pay_1 is u1's already
        ("evt_r4", "applied"),  # deferred, then applied once pay_4 landed
        ("evt_4", "applied"),
        ("evt_r1", "applied"),
        ("evt_5", "applied"),
        ("evt_r2", "quarantined"),  # 99 of 40
        ("evt_6", "quarantined"),  # no wallet
        ("evt_c3", "applied"),
        ("evt_7", "applied"),
    ]
    assert wallet_state(gateway) == wallet_state(replayed_gateway)
    assert wallet_state(gateway) == {
        "u1": (77, {"purchase-pay_1": 100, "refund-re_1": -30, "purchase-pay_5": 7}),
        "u2": (60, {"purchase-pay_2": 40, "purchase-pay_4": 30, "refund-re_4": -10}),
        "u3": (31, {"purchase-pay_3": 50, "chargeback-cb_3": -20, "purchase-pay_7": 1}),
    }


@pytest.mark.django_db
def test_deliveries_arriving_during_a_drain_wake_no_second_drainer(client, gateway, broker):
    put_wallets(gateway, {"u1": (0, [])})
    holder = drain.claim()  # a worker is draining right now
    queued = broker.queue_size()
    assert deliver(client, event_line("evt_1", payment="pay_1", points=5)).status_code == 202
    assert deliver(client, event_line("evt_2", payment="pay_2", points=6)).status_code == 202
    assert broker.queue_size() == queued, "arrivals during a drain leave it a request, not a task each"
    assert drain.asked_again()

    assert tasks.drain_webhooks() == 0, "a second drainer (a sweep's) waits for the one holding the lease"
    assert drain.queue_state()[0] == 2

    drain.release(holder)  # the holder lets go, then looks for the request
    assert tasks.drain_webhooks() == 2
    assert set(ProviderEventDelivery.objects.values_list("status", flat=True)) == {EventStatus.APPLIED}
    assert wallet_state(gateway)["u1"][0] == 11


@pytest.mark.django_db
def test_a_drainer_leaving_as_a_task_asks_it_to_look_again_leaves_no_request_behind(
    client, gateway, broker, monkeypatch
):
    """The holder lets go and finds no request just before the task that found
    it busy makes one: unless that task then drains, its request stays pending
    with nobody to see it, and each arrival after it takes the request for a
    drain on its way and enqueues none (the bench's burst sat for 50 s, until
    the minute's sweep)."""
    put_wallets(gateway, {"u1": (0, [])})
    holder = drain.claim()  # a worker draining what an earlier arrival woke it for
    ask_again = drain.ask_again

    def holder_leaves_first():
        drain.release(holder)  # the holder's last steps: let go, then look for a request
        assert not drain.asked_again()
        ask_again()

    monkeypatch.setattr(drain, "ask_again", holder_leaves_first)
    assert tasks.drain_webhooks() == 0  # the task woken by that arrival: nothing left for it
    assert not drain.asked_again(), "the task drained (nothing) itself rather than leave its request"

    queued = broker.queue_size()
    assert deliver(client, event_line("evt_1", payment="pay_1", points=5)).status_code == 202
    assert broker.queue_size() == queued + 1, "the next arrival wakes a drain"
    assert tasks.drain_webhooks() == 1
    assert wallet_state(gateway)["u1"][0] == 5


@pytest.mark.django_db
def test_an_arrival_during_a_batch_is_drained_by_the_holder_without_a_task(
    client, gateway, broker, monkeypatch
):
    """The path every burst takes: a delivery that arrives while the drainer
    applies a batch raises the request and enqueues nothing; the drainer
    takes it up itself (after letting go, it sees the request and goes on)."""
    put_wallets(gateway, {"u1": (0, [])})
    monkeypatch.setattr(drain, "FILL_PAUSE", 0)
    apply_batch, arrived = services.apply_batch, []

    def batch_during_which_one_arrives(batch, **kwargs):
        if not arrived:
            arrived.append(deliver(client, event_line("evt_2", payment="pay_2", points=6)).status_code)
        return apply_batch(batch, **kwargs)

    assert deliver(client, event_line("evt_1", payment="pay_1", points=5)).status_code == 202
    monkeypatch.setattr(services, "apply_batch", batch_during_which_one_arrives)
    queued = broker.queue_size()
    assert tasks.drain_webhooks() == 2, "one drain took the arrival too"
    assert arrived == [202]
    assert broker.queue_size() == queued, "the arrival enqueued no task"
    assert wallet_state(gateway)["u1"][0] == 11


@pytest.mark.django_db
def test_a_drainer_stopped_by_an_error_leaves_a_drain_for_what_arrived(client, gateway, broker, monkeypatch):
    """An error ends the drain (the database, say): what arrived while it held
    the lease raised a request and enqueued nothing, so it hands over to a task."""
    put_wallets(gateway, {"u1": (0, [])})

    def batch_that_fails(batch, **kwargs):
        deliver(client, event_line("evt_2", payment="pay_2", points=6))
        raise OperationalError("database is locked")

    assert deliver(client, event_line("evt_1", payment="pay_1", points=5)).status_code == 202
    monkeypatch.setattr(services, "apply_batch", batch_that_fails)
    queued = broker.queue_size()
    with pytest.raises(OperationalError):
        tasks.drain_webhooks()
    assert broker.queue_size() == queued + 1, "a next drain is on its way"
    monkeypatch.undo()
    assert tasks.drain_webhooks() == 2
    assert wallet_state(gateway)["u1"][0] == 11


@pytest.mark.django_db
def test_a_lost_drainer_lease_lapses_and_the_sweep_drains(client, gateway, settings, broker):
    settings.WEBHOOK_DRAIN_LEASE_SECONDS = 0
    put_wallets(gateway, {"u1": (0, [])})
    drain.claim()  # a worker that died holding the lease
    deliver(client, event_line("evt_1", payment="pay_1", points=5))
    ProviderEventDelivery.objects.update(
        received_at=ProviderEventDelivery.objects.get().received_at.replace(year=2020)
    )

    queued = broker.queue_size()
    assert tasks.sweep_webhooks() == 1
    assert broker.queue_size() == queued + 1, "the sweep enqueues a drain"
    assert tasks.drain_webhooks() == 1
    assert ProviderEventDelivery.objects.get().status == EventStatus.APPLIED


@pytest.mark.django_db
def test_the_waiting_queue_shows_in_the_admin_and_the_metrics(client, gateway, broker, settings):
    from django.contrib.auth import get_user_model

    put_wallets(gateway, {"u1": (0, [])})
    for n in range(3):
        deliver(client, event_line(f"evt_{n}", payment=f"pay_{n}", points=1))
    ProviderEventDelivery.objects.filter(event_id="evt_0").update(
        received_at=ProviderEventDelivery.objects.get(event_id="evt_0").received_at.replace(year=2020)
    )

    settings.METRICS_TOKEN = "metrics-test-token"
    scrape = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-test-token").content.decode()
    assert "revassure_webhook_deliveries_waiting 3.0" in scrape
    oldest = next(
        line for line in scrape.splitlines() if line.startswith("revassure_webhook_oldest_waiting_seconds ")
    )
    assert float(oldest.split()[1]) > 365 * 86400

    staff = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(staff)
    page = client.get(reverse("admin:backfill_providereventdelivery_changelist")).content.decode()
    assert "3 webhook deliveries waiting to be applied" in page
    tasks.drain_webhooks()
    page = client.get(reverse("admin:backfill_providereventdelivery_changelist")).content.decode()
    assert "No webhook delivery is waiting" in page
    assert json.loads(json.dumps(drain.queue_state())) == [0, 0.0]


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_the_drain_steps_aside_while_ops_replay_stored_deliveries(client, gateway, broker):
    put_wallets(gateway, {"u1": (0, [])})
    deliver(client, event_line("evt_1", payment="pay_1", points=5))
    replay = run_requests.request_stored_replay()  # queued for a worker, not run yet

    assert tasks.drain_webhooks() == 0, "the stored replay applies and counts what waits"
    assert drain.queue_state()[0] == 1

    DataMigration.objects.filter(pk=replay.pk).update(status=MigrationStatus.COMPLETED)
    assert tasks.drain_webhooks() == 1
    assert ProviderEventDelivery.objects.get().status == EventStatus.APPLIED
