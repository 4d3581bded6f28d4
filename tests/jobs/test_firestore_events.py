"""POST /api/events/firestore: Firestore's Eventarc events (CloudEvents binary
mode, a DocumentEventData body built with the real protobuf types) go through
the watcher's debounce and re-check; authenticated like the job endpoints."""

import datetime as dt

import pytest
from django.urls import reverse

from reconciliation import pending_checks, tasks, watcher
from reconciliation.models import Break, PendingCheck, RunTrigger
from revassure import dbclock
from revassure.firestore import Write
from revassure.firestore.events import event_body
from tests.helpers import firestore_client, put_wallets

pytestmark = pytest.mark.django_db


def event(client, bearer, document, *, event_id="ev-1", old=None, update_time=None, **headers):
    """One event as Eventarc delivers it."""
    project = client.project
    name = f"projects/{project}/databases/(default)/documents/{document}" if document else None
    old_name = f"projects/{project}/databases/(default)/documents/{old}" if old else None
    values = {
        "HTTP_CE_ID": event_id,
        "HTTP_CE_SOURCE": f"//firestore.googleapis.com/projects/{project}/databases/(default)",
        "HTTP_CE_TYPE": "google.cloud.firestore.document.v1.written",
        "HTTP_CE_SPECVERSION": "1.0",
        "HTTP_CE_SUBJECT": f"documents/{document or old}",
        "HTTP_CE_TIME": "2026-12-07T10:00:00Z",
        **headers,
    }
    if bearer:
        values["HTTP_AUTHORIZATION"] = f"Bearer {bearer}"
    return client.post(
        reverse("events-firestore"),
        data=event_body(name, old_name=old_name, update_time=update_time),
        content_type="application/protobuf",
        **values,
    )


@pytest.fixture
def eventarc(client, gateway, job_settings, settings, django_capture_on_commit_callbacks):
    settings.WATCHER_DEBOUNCE_SECONDS = 0.05
    client.project = gateway.project

    def post(document, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):  # the task runs (sync mode)
            return event(client, kwargs.pop("bearer", None), document, **kwargs)

    return post


def test_an_event_for_a_drifted_wallet_opens_a_break_found_by_the_watcher(eventarc, gateway, token):
    put_wallets(gateway, {"u1": (10, [10])})
    firestore_client(gateway.project).collection("wallets").document("u1").update({"points": 14})

    response = eventarc("wallets/u1", bearer=token(), update_time=dt.datetime.now(dt.UTC))

    assert response.status_code == 202 and response.json() == {"wallets": ["u1"]}
    brk = Break.objects.get(uid="u1")
    assert brk.delta == 4 and brk.first_run.trigger == RunTrigger.WATCHER
    assert not PendingCheck.objects.exists()


def test_events_of_paired_writes_redelivered_and_out_of_order_report_nothing(eventarc, gateway, token):
    put_wallets(gateway, {"u1": (10, [10])})
    gateway.append_entry("u1", "p1", {"amount": 5, "type": "purchase"})  # entry and wallet in one commit
    later, earlier = dt.datetime.now(dt.UTC), dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)

    answers = [
        eventarc("wallets/u1", bearer=token(), event_id="a", update_time=later).status_code,
        eventarc("wallets/u1/ledger/p1", bearer=token(), event_id="b", update_time=earlier).status_code,
        eventarc("wallets/u1/ledger/p1", bearer=token(), event_id="b", update_time=earlier).status_code,
    ]

    assert answers == [202, 202, 202]
    assert not Break.objects.exists()


def test_an_event_for_another_document_is_answered_and_ignored(eventarc, token):
    response = eventarc("config/adjustments", bearer=token())
    assert response.status_code == 200 and response.json() == {"wallets": []}
    assert not PendingCheck.objects.exists()


def test_it_refuses_an_event_without_a_token_or_from_a_caller_not_allowed(eventarc, token):
    assert eventarc("wallets/u1").status_code == 401
    assert eventarc("wallets/u1", bearer=token(email="someone@example.com")).status_code == 403
    assert not PendingCheck.objects.exists()


def test_it_refuses_an_event_that_is_not_a_firestore_event_of_this_project(eventarc, client, token):
    wrong_type = eventarc(
        "wallets/u1", bearer=token(), HTTP_CE_TYPE="google.cloud.storage.object.v1.finalized"
    )
    assert wrong_type.status_code == 400 and "ce-type" in wrong_type.json()["error"]
    other = eventarc(
        "wallets/u1",
        bearer=token(),
        HTTP_CE_SOURCE="//firestore.googleapis.com/projects/elsewhere/databases/(default)",
    )
    assert other.status_code == 400 and "not this project" in other.json()["error"]
    garbage = client.post(
        reverse("events-firestore"),
        data=b"\xff\xff\xff",
        content_type="application/protobuf",
        HTTP_AUTHORIZATION=f"Bearer {token()}",
        HTTP_CE_ID="x",
        HTTP_CE_TYPE="google.cloud.firestore.document.v1.written",
        HTTP_CE_SOURCE=f"//firestore.googleapis.com/projects/{client.project}/databases/(default)",
    )
    assert garbage.status_code == 400 and "DocumentEventData" in garbage.json()["error"]
    for when in ("2026-02-30T10:00:00Z", "yesterday", "2026-12-07T10:00:00"):
        late = eventarc("wallets/u1", bearer=token(), HTTP_CE_TIME=when)
        assert late.status_code == 400 and "ce-time" in late.json()["error"], when
    assert not PendingCheck.objects.exists()


def test_a_noted_wallet_whose_check_task_was_lost_is_checked_by_the_minutes_sweep(
    client, gateway, token, job_settings, settings, django_capture_on_commit_callbacks
):
    settings.WATCHER_DEBOUNCE_SECONDS = 0
    client.project = gateway.project
    put_wallets(gateway, {"u1": (10, [10])})
    firestore_client(gateway.project).collection("wallets").document("u1").update({"points": 14})
    with django_capture_on_commit_callbacks() as queued:  # its task went to a machine that died
        assert event(client, token(), "wallets/u1", update_time=dt.datetime.now(dt.UTC)).status_code == 202
    assert len(queued) == 1 and not Break.objects.exists()

    assert tasks.sweep_written_wallets() is True  # the check runs here (sync mode)

    assert Break.objects.get(uid="u1").delta == 4
    assert not PendingCheck.objects.exists()
    assert tasks.sweep_written_wallets() is False


def test_a_check_whose_worker_died_is_taken_again_once_its_lease_lapses(gateway):
    put_wallets(gateway, {"u1": (10, [10])})
    firestore_client(gateway.project).collection("wallets").document("u1").update({"points": 14})
    written = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    PendingCheck.objects.create(
        uid="u1", first_write=written, due_at=written, claim="dead", lease_until=dbclock.ahead(60)
    )
    assert tasks.sweep_written_wallets() is False  # its worker's lease lives
    assert pending_checks.check_noted(gateway=gateway) == []

    PendingCheck.objects.update(lease_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    assert [drift["uid"] for drift in pending_checks.check_noted(gateway=gateway)] == ["u1"]
    assert not PendingCheck.objects.exists()


def test_a_write_during_a_check_is_checked_again_after_it(
    gateway, monkeypatch, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"u1": (10, [10])})
    written = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    PendingCheck.objects.create(uid="u1", first_write=written, due_at=written)
    real_check = watcher.check_written

    def written_again_while_checked(noted, **kwargs):
        found = real_check(noted, **kwargs)
        with django_capture_on_commit_callbacks():  # the new event's own task, not run here
            pending_checks.note_written([Write("u1", "wallets/u1", dt.datetime.now(dt.UTC))])
        return found

    monkeypatch.setattr(watcher, "check_written", written_again_while_checked)
    assert pending_checks.check_noted(gateway=gateway) == []  # clean when read

    row = PendingCheck.objects.get(uid="u1")
    assert (row.claim, row.lease_until) == ("", None) and row.first_write > written  # due again
