"""The wallet page: one wallet's balance (live), ledger (paged, newest first,
with who wrote each entry of ours), violations, requests and deliveries, and
what the viewer's role may do from there; refused to anyone without a role."""

import json
import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from backfill.services import apply_delivery
from reconciliation import changes, services
from reconciliation.models import BalanceRequest, Break, RunTrigger
from revassure import freeze
from tests.helpers import event_line, put_wallets, stored_event

PAGE = "admin:wallet_lookup"
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def page_of(client, uid, **params):
    response = client.get(reverse(PAGE), {"uid": uid, **params})
    assert response.status_code == 200
    return response


def text_of(page, element_id):
    """The text inside the element with this id (tags stripped)."""
    match = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert match, f"no element #{element_id}"
    return re.sub(r"<[^>]+>", "", match.group(2)).strip()


def ledger_ids(page):
    return re.findall(r'<tr class="ledger-entry[^"]*" data-entry-id="([^"]+)"', page)


def run_now(gateway):
    return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)


def replay(tmp_path, lines):
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join(lines) + "\n")
    out = StringIO()
    call_command("replay_webhooks", str(export), "--json", stdout=out)
    return json.loads(out.getvalue())


# -- who may look ----------------------------------------------------------------


@pytest.mark.django_db
def test_every_role_may_look_and_an_outsider_is_refused(client, gateway, reviewer, approver, ops, outsider):
    put_wallets(gateway, {"w": (5, [5])})
    for user in (reviewer, approver, ops):
        client.force_login(user)
        assert client.get(reverse(PAGE)).status_code == 200, user
        assert client.get(reverse(PAGE), {"uid": "w"}).status_code == 200, user
    client.force_login(outsider)
    assert client.get(reverse(PAGE), {"uid": "w"}).status_code == 403
    client.logout()
    assert client.get(reverse(PAGE), {"uid": "w"}).status_code == 302  # to the login page


@pytest.mark.django_db
def test_the_admin_index_links_to_the_wallet_page_for_the_roles_only(client, reviewer, outsider):
    client.force_login(reviewer)
    assert f'href="{reverse(PAGE)}"' in client.get(reverse("admin:index")).content.decode()
    client.force_login(outsider)
    index = client.get(reverse("admin:index"))
    assert f'href="{reverse(PAGE)}"' not in index.content.decode()


# -- the wallet now ------------------------------------------------------------------


@pytest.mark.django_db
def test_it_shows_the_balance_and_ledger_sum_as_firestore_has_them_now(client, gateway, reviewer):
    put_wallets(gateway, {"w": (2648395, [2648000, 395])})
    client.force_login(reviewer)

    first = page_of(client, "w").content.decode()
    gateway.append_entry("w", "late", {"type": "purchase", "amount": 1000, "createdAt": T0})
    second = page_of(client, "w").content.decode()

    assert text_of(first, "wallet-balance") == "2,648,395"
    assert text_of(first, "wallet-ledger-sum") == "2,648,395"
    assert text_of(first, "wallet-entry-count") == "2"
    assert text_of(first, "wallet-drift") == "In balance"
    assert text_of(second, "wallet-balance") == "2,649,395"
    assert text_of(second, "wallet-entry-count") == "3"


@pytest.mark.django_db
def test_it_shows_drift_with_its_sign(client, gateway, reviewer):
    put_wallets(gateway, {"w": (1130, [120])})
    client.force_login(reviewer)

    assert text_of(page_of(client, "w").content.decode(), "wallet-drift") == "+1,010"


@pytest.mark.django_db
def test_an_unknown_uid_says_so_and_still_lists_our_records(client, gateway, reviewer):
    put_wallets(gateway, {"w": (5, [5])})
    delivery = stored_event("evt_ghost", user="ghost")
    apply_delivery(delivery.pk, gateway=gateway)  # quarantined: unknown user
    client.force_login(reviewer)

    page = page_of(client, "ghost").content.decode()

    assert "There is no wallet ghost in Firestore" in text_of(page, "wallet-unknown")
    assert 'id="wallet-balance"' not in page
    assert f"#{delivery.pk}" in text_of(page, "wallet-deliveries")
    assert "Quarantined" in text_of(page, "wallet-deliveries")


@pytest.mark.django_db
def test_a_uid_that_cannot_name_a_wallet_is_said_to_be_so(client, gateway, reviewer):
    client.force_login(reviewer)

    page = page_of(client, "a/b").content.decode()

    assert 'id="wallet-invalid"' in page


# -- the ledger ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_ledger_is_paged_newest_first_with_undated_entries_last(client, gateway, reviewer):
    entries = {
        f"e{n:02d}": {"type": "purchase", "amount": 10, "createdAt": T0 + timedelta(hours=n)}
        for n in range(30)
    }
    entries["old-import"] = {"type": "purchase", "amount": 10}  # no createdAt
    gateway.write_wallets([("w", 310, entries)])
    client.force_login(reviewer)

    first = page_of(client, "w").content.decode()
    second = page_of(client, "w", page=2).content.decode()

    assert ledger_ids(first) == [f"e{n:02d}" for n in range(29, 4, -1)]
    assert ledger_ids(second) == ["e04", "e03", "e02", "e01", "e00", "old-import"]
    assert "21 Nov 2026, 15:00 UTC" in first  # e29, one date format with its zone
    assert 'id="wallet-ledger-older"' in first and 'id="wallet-ledger-newer"' in second
    assert "Page 2 of 2" in second


@pytest.mark.django_db
def test_a_malformed_amount_is_shown_as_it_is(client, gateway, reviewer):
    put_wallets(gateway, {"w": (10, [5, "5"])})
    client.force_login(reviewer)

    page = page_of(client, "w").content.decode()

    assert "&#x27;5&#x27; (malformed)" in page
    assert text_of(page, "wallet-malformed").startswith("1 ledger entry has a malformed amount")


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_each_entry_of_ours_says_who_wrote_it(
    client, gateway, tmp_path, reviewer, approver, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"w": (1100, [1000])})
    run = run_now(gateway)
    [heal] = changes.propose_heals(
        run.violations.all(), actor=reviewer, strategy="post_adjustment", reason="x", gateway=gateway
    )
    with django_capture_on_commit_callbacks(execute=True):
        changes.approve(heal.pk, actor=approver, gateway=gateway)
    adjustment = changes.propose_adjustment(
        actor=reviewer, uid="w", amount=5, reason_code="goodwill", reason="x", gateway=gateway
    )
    with django_capture_on_commit_callbacks(execute=True):
        changes.approve(adjustment.pk, actor=approver, gateway=gateway)
    result = replay(
        tmp_path,
        [
            event_line("evt_1", user="w", payment="pay_1", points=100),
            event_line("evt_r", "payment.refunded", user="w", payment="pay_1", points=30, refund_id="re_1"),
        ],
    )
    webhook = stored_event("evt_2", user="w", payment="pay_2", points=7)
    apply_delivery(webhook.pk, gateway=gateway)
    client.force_login(reviewer)

    page = page_of(client, "w").content.decode()

    rows = {
        entry_id: re.sub(r"<[^>]+>", "", row)
        for entry_id, row in re.findall(r'data-entry-id="([^"]+)">(.*?)</tr>', page, re.S)
    }
    migration = result["migration_id"]
    assert f"Heal: request #{heal.pk}" in rows[f"revassure-heal-{heal.pk}"]
    assert f"Manual adjustment: request #{adjustment.pk}" in rows[f"revassure-adjustment-{adjustment.pk}"]
    assert (
        "Replay: delivery #" in rows["purchase-pay_1"] and f"migration #{migration}" in rows["purchase-pay_1"]
    )
    assert "Reversal: delivery #" in rows["refund-re_1"] and f"migration #{migration}" in rows["refund-re_1"]
    assert f"Webhook: delivery #{webhook.pk}" in rows["purchase-pay_2"]
    assert "Points app" in rows["e000"]
    assert f'href="{reverse("admin:backfill_datamigration_change", args=[migration])}"' in page
    assert f'href="{reverse("admin:reconciliation_balancerequest_change", args=[heal.pk])}"' in page


# -- its records -----------------------------------------------------------------


@pytest.mark.django_db
def test_it_lists_the_wallets_violations_with_their_heals_and_its_requests(client, gateway, reviewer):
    put_wallets(gateway, {"w": (1130, [120]), "other": (1, [2])})
    run = run_now(gateway)
    violation = run.violations.get(uid="w")
    [heal] = changes.propose_heals(
        [violation], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )
    client.force_login(reviewer)

    page = page_of(client, "w").content.decode()

    violations = text_of(page, "wallet-violations")
    assert (
        f"Run {run.pk}" in violations and "+1,010" in violations and f"Heal #{heal.pk} proposed" in violations
    )
    assert "other" not in violations
    assert f'href="{reverse("admin:reconciliation_violation_change", args=[violation.pk])}"' in page
    requests = text_of(page, "wallet-requests")
    assert f"#{heal.pk}" in requests and "−1,010" in requests and "Proposed" in requests


@pytest.mark.django_db
def test_it_lists_the_wallets_breaks_open_first(client, gateway, reviewer):
    put_wallets(gateway, {"w": (130, [120]), "other": (1, [2])})
    run_now(gateway)
    put_wallets(gateway, {"w": (120, [120])})  # fixed behind our back: the break clears
    run_now(gateway)
    put_wallets(gateway, {"w": (100, [120])})  # and drifts again: a second break
    run_now(gateway)
    older, newer = Break.objects.filter(uid="w").order_by("first_seen", "id")
    client.force_login(reviewer)

    page = page_of(client, "w").content.decode()

    breaks = text_of(page, "wallet-breaks")
    assert breaks.index(f"Break {newer.pk}") < breaks.index(f"Break {older.pk}")  # open first
    assert "Open" in breaks and "−20" in breaks
    assert "Closed (cleared without us)" in breaks and "+10" in breaks
    assert f'href="{reverse("admin:reconciliation_break_change", args=[older.pk])}"' in page
    assert "other" not in breaks


# -- what the viewer may do --------------------------------------------------------


@pytest.mark.django_db
def test_a_reviewer_may_propose_an_adjustment_and_a_heal_of_the_open_violation(client, gateway, reviewer):
    put_wallets(gateway, {"w": (1130, [120])})
    run = run_now(gateway)
    client.force_login(reviewer)

    page = page_of(client, "w").content.decode()

    propose = reverse("admin:reconciliation_balancerequest_propose") + "?uid=w"
    assert re.search(rf'<a href="{re.escape(propose)}" id="wallet-propose-adjustment"', page)
    assert 'id="wallet-propose-heal"' in page and "<button" in page
    # The button opens the heal form for that violation.
    form = client.post(
        reverse("admin:reconciliation_violation_changelist") + "?run__id__exact=all",
        {"action": "propose_heal", "_selected_action": [run.violations.get().pk]},
    )
    assert "Propose heals for 1 violation(s)" in form.content.decode()
    assert 'name="strategy"' in form.content.decode()


@pytest.mark.django_db
def test_no_heal_is_offered_for_a_malformed_violation_or_a_wallet_found_clean_since(
    client, gateway, reviewer
):
    put_wallets(gateway, {"bad": (10, [5, "5"]), "fixed": (7, [5])})
    run_now(gateway)
    put_wallets(gateway, {"fixed": (5, [5])})
    services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway, uids=["fixed"])
    client.force_login(reviewer)

    bad = page_of(client, "bad").content.decode()
    fixed = page_of(client, "fixed").content.decode()

    assert "<button" not in text_of(bad, "wallet-actions") and "cannot be healed" in bad
    assert 'id="wallet-no-violation"' in fixed


@pytest.mark.django_db
def test_while_frozen_the_page_says_so_instead_of_offering_changes(client, gateway, reviewer, ops):
    put_wallets(gateway, {"w": (1130, [120])})
    run_now(gateway)
    freeze.freeze(actor=ops, reason="cutover to v2", gateway=gateway)
    client.force_login(reviewer)

    page = page_of(client, "w").content.decode()

    actions = text_of(page, "wallet-actions")
    assert (
        "Adjustments are frozen" in actions and "Heals are frozen" in actions and "cutover to v2" in actions
    )
    assert "<button" not in page.split('id="wallet-actions"')[1].split("</div>")[0]
    assert "<a href" not in page.split('id="wallet-actions"')[1].split("</div>")[0]


@pytest.mark.django_db
def test_an_approver_is_offered_the_requests_awaiting_them_and_nothing_else(
    client, gateway, reviewer, approver
):
    put_wallets(gateway, {"w": (10, [10])})
    request = changes.propose_adjustment(
        actor=reviewer, uid="w", amount=5, reason_code="goodwill", reason="x", gateway=gateway
    )
    client.force_login(approver)

    page = page_of(client, "w").content.decode()

    decide = reverse("admin:reconciliation_balancerequest_decide", args=[request.pk])
    assert f'id="wallet-decide-{request.pk}"' in page and f'href="{decide}"' in page
    assert 'id="wallet-propose-adjustment"' not in page and 'id="wallet-propose-heal"' not in page
    # The proposer, a reviewer, gets no decide link.
    client.force_login(reviewer)
    assert f'href="{decide}"' not in page_of(client, "w").content.decode()


@pytest.mark.django_db
def test_ops_read_the_page_with_no_actions(client, gateway, ops):
    put_wallets(gateway, {"w": (1130, [120])})
    run_now(gateway)
    client.force_login(ops)

    page = page_of(client, "w").content.decode()

    assert 'id="wallet-no-actions"' in page
    assert not BalanceRequest.objects.exists()
