"""A malformed break corrected from the pages (issue 25): the break's page
offers a correction of its malformed entry, read live, its reading prefilled
and its effect on the ledger said; it posts in place and comes back with the
list's filters; the decide page shows the entry it supersedes; once applied,
the wallet page links the two and the break closes as healed. Real HTTP
through the test client, the real emulator."""

from urllib.parse import urlencode

import pytest
from django.test import TestCase
from django.urls import reverse

from reconciliation import services
from reconciliation.models import BalanceRequest, Break, RequestState, RunTrigger
from tests.helpers import csp_refusals, firestore_client

pytestmark = pytest.mark.django_db

FILTERS = "status=not_closed&kind__exact=malformed"
PRESERVED = urlencode({"_changelist_filters": FILTERS})


def reconcile(gateway):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)


def brk(uid) -> Break:
    return Break.objects.get(uid=uid)


def page(uid):
    return f"{reverse('admin:reconciliation_break_change', args=[brk(uid).pk])}?{PRESERVED}"


def correct_url(uid):
    return f"{reverse('admin:reconciliation_break_propose_correction', args=[brk(uid).pk])}?{PRESERVED}"


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def wallets(gateway):
    """ "bad": 125 points over a purchase of 100 and an entry of "25" (+25,
    malformed); "over": a drift of +415."""
    gateway.write_wallets(
        [
            ("bad", 125, {"e000": {"type": "purchase", "amount": 100}, "e001": {"amount": "25"}}),
            ("over", 624, {"e000": {"type": "purchase", "amount": 209}}),
        ]
    )
    reconcile(gateway)
    return gateway


def test_a_malformed_break_offers_a_correction_with_the_entry_its_reading_and_its_effect(
    client, wallets, reviewer
):
    client.force_login(reviewer)

    body = client.get(page("bad")).content.decode()

    assert csp_refusals(body) == []
    assert 'id="break-correct"' in body and 'id="break-propose-correction"' in body
    assert "Now: wallet 125 points, ledger 100, delta +25." in body
    assert (
        "e001: a string &quot;25&quot;, read as +25: the customer&#x27;s balance stays 125 points; "
        "the ledger goes 100 → 125 (an entry of +25); the difference of +25 is gone"
    ) in body
    assert 'name="amount" value="25"' in body  # prefilled from its reading
    assert "<strong>Propose a correction</strong>" not in body  # offered, not refused
    # A drift has nothing to correct: no form, and no line saying it cannot.
    drift = client.get(page("over")).content.decode()
    assert 'id="break-correct"' not in drift and "Propose a correction" not in drift


def test_a_correction_is_proposed_in_place_and_the_page_says_what_is_open(client, wallets, reviewer):
    client.force_login(reviewer)

    response = client.post(
        correct_url("bad"), {"entry_id": "e001", "amount": "25", "reason": "receipt: 25 points"}, follow=True
    )

    request = BalanceRequest.objects.get()
    assert (request.kind, request.supersedes, request.amount, request.state) == (
        "correction",
        "e001",
        25,
        "proposed",
    )
    assert response.redirect_chain == [(page("bad"), 302)]
    assert messages_of(response) == [
        f"Correction #{request.pk} proposed (entry e001 to count +25 points): another person approves it."
    ]
    body = response.content.decode()
    assert f"Correction #{request.pk} proposed</a>, entry e001 superseded by an entry of +25" in body
    assert (
        f"<strong>Propose a correction</strong>: not now, its wallet already has correction #{request.pk} "
        "(proposed)"
    ) in body
    assert 'id="break-correct"' not in body
    assert (
        "<strong>Propose a heal</strong>: not now, its wallet already has "
        f"correction #{request.pk} (proposed)"
    ) in body
    assert f"Correction #{request.pk} proposed: entry e001 to count +25 points: receipt: 25 points" in body


def test_bad_input_comes_back_with_what_was_typed_and_the_reason(client, wallets, reviewer):
    client.force_login(reviewer)

    fraction = client.post(correct_url("bad"), {"entry_id": "e001", "amount": "25.5", "reason": "typo"})
    assert fraction.status_code == 200
    assert "Enter a whole number." in fraction.content.decode()
    assert "typo</textarea>" in fraction.content.decode()
    unknown = client.post(correct_url("bad"), {"entry_id": "e000", "amount": "25", "reason": "typo"})
    assert "Select a valid choice. e000 is not one of the available choices." in unknown.content.decode()

    firestore_client(wallets.project).collection("wallets").document("bad").update({"points": 130})
    moved = client.post(correct_url("bad"), {"entry_id": "e001", "amount": "25", "reason": "the receipt"})
    body = moved.content.decode()
    assert "Refused: bad changed since run" in body and "run reconciliation again" in body
    assert "the receipt</textarea>" in body
    back = page("bad").replace("&", "&amp;")
    assert f'href="{back}"' in body
    assert not BalanceRequest.objects.exists()


def test_an_approver_decides_it_seeing_the_entry_and_once_applied_the_break_closes_healed(
    client, wallets, reviewer, approver, django_capture_on_commit_callbacks
):
    client.force_login(reviewer)
    client.post(correct_url("bad"), {"entry_id": "e001", "amount": "25", "reason": "receipt: 25 points"})
    request = BalanceRequest.objects.get()
    client.force_login(approver)
    decide = reverse("admin:reconciliation_balancerequest_decide", args=[request.pk])

    body = client.get(decide).content.decode()

    assert csp_refusals(body) == []
    assert f"Correction #{request.pk}" in body
    assert (
        "entry e001, which holds a string &quot;25&quot;: a new entry of +25 points supersedes it "
        "(the malformed entry stays in the ledger and counts for nothing)"
    ) in body
    assert "the customer&#x27;s balance stays 125 points; the ledger goes 100 → 125 (an entry of +25)" in body
    assert 'id="decide-break-link"' in body and "malformed" in body

    with django_capture_on_commit_callbacks(execute=True):
        approved = client.post(decide, {"reason": "checked the receipt", "approve": "1"}, follow=True)
    assert f"Request {request.pk} approved; a worker applies it now." in messages_of(approved)
    request.refresh_from_db()
    assert request.state == RequestState.APPLIED

    wallet = client.get(reverse("admin:wallet_lookup") + "?uid=bad").content.decode()
    assert f"(superseded by {request.ledger_entry_id})" in wallet
    assert "(malformed)" not in wallet and 'id="wallet-malformed"' not in wallet

    run = reconcile(wallets)
    assert [v.uid for v in run.violations.all()] == ["over"]
    closed = client.get(page("bad")).content.decode()
    assert f'id="break-heal">Correction #{request.pk}</a>' in closed
    assert "healed by a heal or correction of ours" in closed
