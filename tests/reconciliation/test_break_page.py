"""A break's page as the workspace (issue 25): take, acknowledge, assign, note,
propose a heal (with its effect on the customer) and accept, in place, each
back to the same page with the list's filters kept; refusals said on the page;
the decide page carrying the break, its cause and its evidence. Real HTTP, the
real emulator."""

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.test import TestCase
from django.urls import reverse

from reconciliation import break_actions, effects, services
from reconciliation.models import BalanceRequest, Break, BreakNote, RunTrigger
from revassure import freeze
from tests.helpers import csp_refusals, firestore_client

LIST = reverse("admin:reconciliation_break_changelist")
FILTERS = "status=not_closed&owner=nobody"
PRESERVED = urlencode({"_changelist_filters": FILTERS})
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def reconcile(gateway, uids=None):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway, uids=uids)


def brk(uid) -> Break:
    return Break.objects.get(uid=uid)


def page(uid, preserved=PRESERVED):
    url = reverse("admin:reconciliation_break_change", args=[brk(uid).pk])
    return f"{url}?{preserved}" if preserved else url


def action_url(name, uid, preserved=PRESERVED):
    url = reverse(f"admin:reconciliation_break_{name}", args=[brk(uid).pk])
    return f"{url}?{preserved}" if preserved else url


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def wallets(gateway):
    """624 points over a ledger of 209 (+415), a missed entry, and a malformed amount."""
    gateway.write_wallets(
        [
            ("over", 624, {"e000": {"type": "purchase", "amount": 209, "createdAt": T0}}),
            (
                "missed",
                150,
                {
                    f"e{n:03d}": {"type": "purchase", "amount": amount, "createdAt": T0 + timedelta(hours=n)}
                    for n, amount in enumerate([100, 50, 20])
                },
            ),
            ("bad", 125, {"e000": {"type": "purchase", "amount": 100}, "e001": {"amount": "25"}}),
        ]
    )
    reconcile(gateway)
    return gateway


@pytest.mark.django_db
def test_take_on_the_break_page_comes_back_to_it_with_the_lists_filters(client, wallets, reviewer):
    client.force_login(reviewer)

    response = client.post(action_url("take", "over"), follow=True)

    assert response.redirect_chain == [(page("over"), 302)]
    assert f"Break {brk('over').pk} (over) taken: it is yours." in messages_of(response)
    assert (brk("over").owner, brk("over").status) == (reviewer, "acknowledged")
    body = response.content.decode()
    # The breadcrumb back to the list is the list as it was filtered.
    assert f'href="{LIST}?{FILTERS.replace("&", "&amp;")}"' in body
    assert 'id="break-take"' not in body  # it is hers now
    assert "<strong>Take</strong>: not now, it is yours already." in body


@pytest.mark.django_db
def test_take_from_a_row_of_the_list_comes_back_to_the_list_as_filtered(client, wallets, reviewer):
    client.force_login(reviewer)
    listed = client.get(f"{LIST}?{FILTERS}")
    body = listed.content.decode()
    take = reverse("admin:reconciliation_break_take", args=[brk("over").pk])
    assert f'formaction="{take}"' in body
    assert f'name="_changelist_filters" value="{FILTERS.replace("&", "&amp;")}"' in body

    response = client.post(take, {"_from_list": "1", "_changelist_filters": FILTERS}, follow=True)

    assert response.redirect_chain == [(f"{LIST}?{FILTERS}", 302)]
    assert brk("over").owner == reviewer
    assert "over" not in [b.uid for b in response.context["cl"].result_list]  # owner=nobody


@pytest.mark.django_db
def test_assign_and_note_in_place(client, wallets, reviewer, django_user_model):
    colleague = django_user_model.objects.create_user("erin", is_staff=True)
    colleague.groups.set(reviewer.groups.all())
    client.force_login(reviewer)
    body = client.get(page("over")).content.decode()
    assert 'id="break-assign-form"' in body and 'id="break-note-form"' in body
    assert f'action="{action_url("assign", "over").replace("&", "&amp;")}"' in body

    assigned = client.post(action_url("assign", "over"), {"owner": colleague.pk}, follow=True)
    assert assigned.redirect_chain == [(page("over"), 302)]
    assert f"Break {brk('over').pk} assigned to erin." in messages_of(assigned)
    noted = client.post(action_url("note", "over"), {"text": "erin knows the batch job"}, follow=True)
    assert noted.redirect_chain == [(page("over"), 302)]
    assert "Note added." in messages_of(noted)
    assert "erin knows the batch job" in noted.content.decode()
    empty = client.post(action_url("note", "over"), {"text": "  "}, follow=True)
    assert "Refused: a note needs some text." in messages_of(empty)

    acknowledge = client.post(action_url("acknowledge", "over"), follow=True)
    assert acknowledge.redirect_chain == [(page("over"), 302)]
    assert messages_of(acknowledge) == [
        f"Refused: break {brk('over').pk} (over): it is assigned to erin: only its owner acknowledges it, "
        "or take it first"
    ]
    assert "<strong>Acknowledge</strong>: not now, it is assigned to erin" in acknowledge.content.decode()


@pytest.mark.django_db
def test_the_heal_form_shows_the_effect_on_the_customer_and_proposes_in_place(client, wallets, reviewer):
    client.force_login(reviewer)
    body = client.get(page("over")).content.decode()
    assert csp_refusals(body) == []
    assert 'id="break-heal"' in body
    assert "Now: wallet 624 points, ledger 209, delta +415." in body
    assert (
        "Rebalance (set points to the ledger sum): the customer&#x27;s balance goes 624 → 209 points" in body
    )
    assert (
        "the customer&#x27;s balance stays 624 points; the ledger goes 209 → 624 (an entry of +415)" in body
    )

    response = client.post(
        action_url("propose_heal", "over"), {"strategy": "rebalance", "reason": "batch job"}, follow=True
    )

    heal = BalanceRequest.objects.get(uid="over")
    assert (heal.amount, heal.state, heal.proposed_by) == (-415, "proposed", reviewer)
    assert response.redirect_chain == [(page("over"), 302)]
    assert messages_of(response) == [
        f"Heal #{heal.pk} proposed (rebalance (set points to the ledger sum), \u2212415 points): "
        "another person approves it."
    ]
    body = response.content.decode()
    assert f"Heal #{heal.pk} proposed" in body  # in the heal requests
    # A heal is open: proposing another, or accepting, is said not to be possible, and why.
    assert f"<strong>Propose a heal</strong>: not now, its wallet already has heal #{heal.pk}" in body
    assert 'id="break-heal"' not in body


@pytest.mark.django_db
def test_a_refused_proposal_keeps_what_was_typed_and_says_why(client, wallets, reviewer):
    firestore_client(wallets.project).collection("wallets").document("over").update({"points": 700})
    client.force_login(reviewer)

    response = client.post(
        action_url("propose_heal", "over"),
        {"strategy": "post_adjustment", "reason": "the points app lost an entry"},
    )

    assert response.status_code == 200
    body = response.content.decode()
    assert "Refused: over changed since run" in body and "run reconciliation again" in body
    assert "the points app lost an entry</textarea>" in body
    assert 'value="post_adjustment" required id="id_strategy_1" checked' in body
    back = page("over").replace("&", "&amp;")
    assert f'href="{back}"' in body  # back to the break, the list's filters kept
    assert not BalanceRequest.objects.exists()

    missing = client.post(action_url("propose_heal", "over"), {"strategy": "rebalance", "reason": ""})
    assert missing.status_code == 200 and "This field is required." in missing.content.decode()


@pytest.mark.django_db
def test_a_malformed_break_says_why_no_heal_is_offered_and_offers_a_correction(
    client, wallets, reviewer, approver
):
    client.force_login(reviewer)
    body = client.get(page("bad")).content.decode()
    assert 'id="break-heal"' not in body and 'id="break-propose-heal"' not in body
    assert "<strong>Propose a heal</strong>: not now, malformed, cannot be healed" in body
    assert "propose a correction of the malformed entry from its break, or accept the difference" in body
    refused = client.post(action_url("propose_heal", "bad"), {"strategy": "rebalance", "reason": "x"})
    assert "a heal would only hide them; propose a correction" in refused.content.decode()
    assert not BalanceRequest.objects.exists()

    # The bulk action on the list says it before its form, and leaves the break out.
    listed = client.post(
        LIST, {"action": "propose_heal", "_selected_action": [brk("bad").pk, brk("over").pk]}
    ).content.decode()
    assert "1 of the 2 selected breaks are left out" in listed
    assert "malformed, cannot be healed" in listed and 'value="' + str(brk("over").pk) + '"' in listed


@pytest.mark.django_db
def test_while_frozen_the_page_says_so_instead_of_offering_a_heal(client, wallets, reviewer, ops):
    freeze.freeze(actor=ops, reason="cutover rehearsal", gateway=wallets)
    client.force_login(reviewer)

    body = client.get(page("over")).content.decode()

    assert 'id="break-heal"' not in body
    assert "<strong>Propose a heal</strong>: not now, manual balance changes are frozen" in body
    assert "cutover rehearsal" in body


@pytest.mark.django_db
def test_an_approver_accepts_in_place_and_reviewers_are_not_offered_it(client, wallets, reviewer, approver):
    client.force_login(reviewer)
    assert 'id="break-accept-section"' not in client.get(page("over")).content.decode()
    client.force_login(approver)
    body = client.get(page("over")).content.decode()
    assert "Accept the difference of +415 points" in body and 'id="break-take"' not in body

    no_reason = client.post(action_url("accept", "over"), {"reason": ""})
    assert no_reason.status_code == 200 and "This field is required." in no_reason.content.decode()
    response = client.post(action_url("accept", "over"), {"reason": "goodwill, 2019"}, follow=True)

    assert response.redirect_chain == [(page("over"), 302)]
    assert f"Break {brk('over').pk} accepted and closed." in messages_of(response)
    assert (brk("over").status, brk("over").accepted_reason) == ("closed", "goodwill, 2019")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name", ["take", "acknowledge", "assign", "note", "propose_heal", "propose_correction", "accept"]
)
def test_each_action_url_takes_a_post_from_its_role_only(client, wallets, reviewer, approver, ops, name):
    allowed = approver if name == "accept" else reviewer
    for user in {reviewer, approver, ops} - {allowed}:
        client.force_login(user)
        assert client.post(action_url(name, "over")).status_code == 403
    client.force_login(allowed)
    assert client.get(action_url(name, "over")).status_code == 405  # nothing changes on a GET
    assert client.post(reverse(f"admin:reconciliation_break_{name}", args=[987654])).status_code == 404
    assert not BreakNote.objects.filter(author__isnull=False).exists()


@pytest.mark.django_db
def test_the_decide_page_carries_the_break_its_cause_evidence_and_the_effect(
    client, wallets, reviewer, approver
):
    missed = brk("missed")
    [heal] = break_actions.propose_heal(
        [missed.pk], actor=reviewer, strategy="rebalance", reason="missed entry", gateway=wallets
    )
    client.force_login(approver)

    body = client.get(reverse("admin:reconciliation_balancerequest_decide", args=[heal.pk])).content.decode()

    assert csp_refusals(body) == []
    assert 'id="decide-break"' in body
    assert reverse("admin:reconciliation_break_change", args=[missed.pk]) in body
    assert "wallet missed its latest entries" in body  # the probable cause, as people read it
    assert missed.cause_text in body
    assert 'id="cause-entries"' in body and "e002" in body  # the evidence: the entry it missed
    assert 'id="decide-effect"' in body
    assert "the customer&#x27;s balance goes 150 → 170 points" in body
    assert effects.request_effect(heal).points_after == 170
