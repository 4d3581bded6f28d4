"""The reconciliation pages as people use them (issue 15): decisions keep their
reason and their form, the decide page shows the wallet now and only offers
what can be done, violations are read run by run with their heals, CSVs are
clean tables, refusals come before the work, and numbers read as numbers."""

import csv
import io
import re

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from reconciliation import changes, services
from reconciliation.models import BalanceRequest, RequestApproval, RequestState, RunTrigger
from revassure import freeze
from revassure.formatting import when
from revassure.roles import APPROVER
from tests.helpers import firestore_client, put_wallets

QUEUE = "admin:reconciliation_balancerequest_changelist"
VIOLATIONS = "admin:reconciliation_violation_changelist"
RUNS = "admin:reconciliation_reconciliationrun_changelist"


def decide_url(request):
    return reverse("admin:reconciliation_balancerequest_decide", args=[request.pk])


def request_url(request):
    return reverse("admin:reconciliation_balancerequest_change", args=[request.pk])


def violation_url(violation):
    return reverse("admin:reconciliation_violation_change", args=[violation.pk])


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def csv_rows(response):
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))


def cells(page, field):
    """The contents of a change list's cells of one column (whatever else the cell carries)."""
    return re.findall(rf'<t[dh][^>]*class="field-{field}(?: [^"]*)?"[^>]*>(.*?)</t[dh]>', page, re.S)


def run_now(gateway):
    return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)


def do_freeze(ops, gateway, reason="cutover"):
    return freeze.freeze(actor=ops, reason=reason, gateway=gateway)


@pytest.fixture
def adjustment(gateway, reviewer):
    put_wallets(gateway, {"a": (1200, [1200])})
    return changes.propose_adjustment(
        actor=reviewer, uid="a", amount=40, reason_code="goodwill", reason="late parcel", gateway=gateway
    )


@pytest.fixture
def two_runs(gateway):
    """Run 1 finds w1 and w2 drifted and `bad` malformed; w2 is put right; run 2 finds w1 and bad."""
    put_wallets(gateway, {"w1": (1130, [120]), "w2": (5, [9]), "bad": (10, [5, "5"]), "ok": (3, [3])})
    first = run_now(gateway)
    put_wallets(gateway, {"w2": (9, [9])})
    second = run_now(gateway)
    return first, second


# -- deciding ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_approvers_reason_is_recorded_and_shown_in_the_trail(
    client, gateway, adjustment, approver, django_capture_on_commit_callbacks
):
    client.force_login(approver)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(decide_url(adjustment), {"approve": "Approve", "reason": "checked the parcel log"})

    assert RequestApproval.objects.get(request=adjustment).reason == "checked the parcel log"
    approved = adjustment.events.get(to_state=RequestState.APPROVED)
    assert approved.actor == approver and "checked the parcel log" in approved.reason
    page = client.get(request_url(adjustment)).content.decode()
    assert "checked the parcel log" in page


@pytest.mark.django_db
def test_a_first_of_two_approvals_keeps_its_reason_in_the_trail(
    client, gateway, reviewer, approver, settings
):
    settings.TWO_APPROVERS_ABOVE = 10
    put_wallets(gateway, {"a": (100, [100])})
    big = changes.propose_adjustment(
        actor=reviewer, uid="a", amount=50, reason_code="goodwill", reason="x", gateway=gateway
    )
    client.force_login(approver)

    client.post(decide_url(big), {"approve": "Approve", "reason": "first look fine"})

    assert big.events.last().reason == "approval 1 of 2: first look fine"


@pytest.mark.django_db
def test_rejecting_without_a_reason_keeps_the_form_with_the_error(client, adjustment, approver):
    client.force_login(approver)

    response = client.post(decide_url(adjustment), {"reject": "Reject", "reason": "  "})

    assert response.status_code == 200
    assert "reason" in response.context["form"].errors
    assert 'id="decide-reject"' in response.content.decode()
    adjustment.refresh_from_db()
    assert adjustment.state == RequestState.PROPOSED


@pytest.mark.django_db
def test_a_refused_decision_keeps_what_was_typed(client, gateway, adjustment, approver, ops):
    do_freeze(ops, gateway)
    client.force_login(approver)

    response = client.post(decide_url(adjustment), {"approve": "Approve", "reason": "my careful words"})

    assert response.status_code == 200
    assert "frozen" in " ".join(response.context["form"].non_field_errors())
    assert "my careful words" in response.content.decode()


@pytest.mark.django_db
def test_the_decide_page_shows_the_wallet_as_it_is_now_beside_the_proposal(
    client, gateway, adjustment, approver
):
    gateway.append_entry("a", "late", {"type": "purchase", "amount": 1000})
    client.force_login(approver)

    page = client.get(decide_url(adjustment)).content.decode()

    assert '<td id="live-points">2,200</td>' in page
    assert '<td id="live-ledger-sum">2,200</td>' in page
    assert '<td id="proposed-points">1,200</td>' in page
    assert "changed since it was proposed" in page
    assert 'id="decide-approve"' in page and 'id="decide-reject"' in page


@pytest.mark.django_db
def test_the_decide_page_says_when_the_wallet_is_gone(client, gateway, reviewer, approver):
    put_wallets(gateway, {"a": (5, [5])})
    request = changes.propose_adjustment(
        actor=reviewer, uid="a", amount=1, reason_code="goodwill", reason="x", gateway=gateway
    )
    firestore_client(gateway.project).collection("wallets").document("a").delete()
    client.force_login(approver)

    page = client.get(decide_url(request)).content.decode()

    assert 'id="live-missing"' in page and "no wallet a in Firestore" in page


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["applied", "rejected", "stale"])
def test_a_closed_request_offers_no_decision_and_says_what_happened(
    client, gateway, adjustment, approver, django_capture_on_commit_callbacks, state
):
    client.force_login(approver)
    if state == "applied":
        with django_capture_on_commit_callbacks(execute=True):
            changes.approve(adjustment.pk, actor=approver, gateway=gateway)
    elif state == "rejected":
        changes.reject(adjustment.pk, actor=approver, reason="not our fault")
    else:
        heal_uid = "h"
        put_wallets(gateway, {heal_uid: (10, [7])})
        run = run_now(gateway)
        [adjustment] = changes.propose_heals(
            run.violations.all(),
            actor=adjustment.proposed_by,
            strategy="rebalance",
            reason="x",
            gateway=gateway,
        )
        gateway.append_entry(heal_uid, "moved", {"type": "purchase", "amount": 1})
        changes.approve(adjustment.pk, actor=approver, gateway=gateway)

    response = client.get(decide_url(adjustment))

    page = response.content.decode()
    assert response.status_code == 200
    closed = re.search(r'id="decide-closed"[^>]*>(.*?)</p>', page, re.S).group(1)
    assert f"<strong>{state}</strong>" in closed and "nothing left to decide" in closed
    assert 'id="decide-approve"' not in page and 'id="decide-reject"' not in page
    assert 'id="decide-form"' not in page


@pytest.mark.django_db
def test_the_decide_page_tells_the_proposer_someone_else_must_decide(client, gateway, adjustment, reviewer):
    reviewer.groups.add(Group.objects.get(name=APPROVER))
    client.force_login(reviewer)

    page = client.get(decide_url(adjustment)).content.decode()

    assert "someone else must" in page
    assert 'id="decide-approve"' not in page


@pytest.mark.django_db
def test_while_frozen_the_decide_page_offers_reject_only_and_says_why(
    client, gateway, adjustment, approver, ops
):
    do_freeze(ops, gateway, reason="cutover to v2")
    client.force_login(approver)

    page = client.get(decide_url(adjustment)).content.decode()

    assert "frozen" in page and "cutover to v2" in page
    assert 'id="decide-approve"' not in page and 'id="decide-reject"' in page


@pytest.mark.django_db
def test_decide_links_are_shown_only_to_those_who_may_decide(
    client, gateway, adjustment, reviewer, approver, ops
):
    link = f'href="{decide_url(adjustment)}"'
    for user in (reviewer, ops):
        client.force_login(user)
        assert link not in client.get(reverse(QUEUE)).content.decode(), user
        assert link not in client.get(request_url(adjustment)).content.decode(), user
    client.force_login(approver)
    assert link in client.get(reverse(QUEUE)).content.decode()
    assert link in client.get(request_url(adjustment)).content.decode()
    # Never on one's own request, even for someone who holds both roles.
    reviewer.groups.add(Group.objects.get(name=APPROVER))
    client.force_login(reviewer)
    assert link not in client.get(reverse(QUEUE)).content.decode()


@pytest.mark.django_db
def test_the_queue_shows_amounts_states_and_dates_for_people(client, gateway, adjustment, approver):
    client.force_login(approver)

    page = client.get(reverse(QUEUE)).content.decode()

    assert "+40" in cells(page, "amount_display")
    assert "Proposed" in cells(page, "state_display")
    assert "Manual adjustment" in page


# -- violations ----------------------------------------------------------------


@pytest.mark.django_db
def test_the_violation_list_shows_the_latest_completed_run_by_default(client, reviewer, two_runs):
    first, second = two_runs
    client.force_login(reviewer)

    default = client.get(reverse(VIOLATIONS))
    every = client.get(reverse(VIOLATIONS) + "?run__id__exact=all")
    older = client.get(reverse(VIOLATIONS) + f"?run__id__exact={first.pk}")

    assert sorted(v.uid for v in default.context["cl"].result_list) == ["bad", "w1"]
    assert {v.run_id for v in default.context["cl"].result_list} == {second.pk}
    assert sorted(v.uid for v in every.context["cl"].result_list) == ["bad", "bad", "w1", "w1", "w2"]
    assert sorted(v.uid for v in older.context["cl"].result_list) == ["bad", "w1", "w2"]
    assert "?run__id__exact=all" in default.content.decode()  # the way to see every run


@pytest.mark.django_db
def test_each_violation_says_whether_a_heal_is_pending_or_applied_and_links_to_it(
    client, gateway, reviewer, approver, two_runs, django_capture_on_commit_callbacks
):
    _, second = two_runs
    w1 = second.violations.get(uid="w1")
    [heal] = changes.propose_heals([w1], actor=reviewer, strategy="rebalance", reason="fix", gateway=gateway)
    client.force_login(reviewer)

    pending = client.get(reverse(VIOLATIONS)).content.decode()
    assert f'<a href="{request_url(heal)}">Heal #{heal.pk} proposed</a>' in pending
    assert f'href="{request_url(heal)}"' in client.get(violation_url(w1)).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        changes.approve(heal.pk, actor=approver, gateway=gateway)
    healed = client.get(reverse(VIOLATIONS) + "?heal=applied")
    assert [v.uid for v in healed.context["cl"].result_list] == ["w1"]
    assert f"Heal #{heal.pk} applied" in healed.content.decode()


@pytest.mark.django_db
def test_violations_show_numbers_and_kinds_for_people(client, gateway, reviewer):
    put_wallets(gateway, {"big": (2648395, [1000])})
    run_now(gateway)
    client.force_login(reviewer)

    page = client.get(reverse(VIOLATIONS)).content.decode()

    assert "+2,647,395" in cells(page, "delta_display")
    assert "2,648,395" in cells(page, "wallet_points_display")
    assert "Drift" in cells(page, "kind_display")


@pytest.mark.django_db
def test_a_malformed_violation_page_offers_no_heal_and_says_why(client, reviewer, two_runs):
    _, second = two_runs
    client.force_login(reviewer)

    bad = client.get(violation_url(second.violations.get(uid="bad"))).content.decode()
    drift = client.get(violation_url(second.violations.get(uid="w1"))).content.decode()

    assert 'id="propose-heal"' not in bad and "cannot be healed" in bad
    assert 'id="propose-heal"' in drift


@pytest.mark.django_db
def test_the_heal_form_is_not_offered_while_frozen(client, gateway, reviewer, ops, two_runs):
    _, second = two_runs
    do_freeze(ops, gateway, reason="cutover to v2")
    client.force_login(reviewer)
    w1 = second.violations.get(uid="w1")

    page = client.post(reverse(VIOLATIONS), {"action": "propose_heal", "_selected_action": [w1.pk]})
    text = page.content.decode()

    assert page.status_code == 200
    assert "frozen" in text and "cutover to v2" in text
    assert 'name="strategy"' not in text and 'name="propose"' not in text
    assert 'id="propose-heal"' not in client.get(violation_url(w1)).content.decode()


@pytest.mark.django_db
def test_the_heal_form_leaves_out_violations_already_being_healed(client, gateway, reviewer, two_runs):
    _, second = two_runs
    w1 = second.violations.get(uid="w1")
    [heal] = changes.propose_heals([w1], actor=reviewer, strategy="rebalance", reason="fix", gateway=gateway)
    client.force_login(reviewer)

    page = client.post(reverse(VIOLATIONS), {"action": "propose_heal", "_selected_action": [w1.pk]})

    assert page.context["buttons"] == []
    assert f"heal #{heal.pk}" in dict(page.context["facts"])["w1"]


# -- CSV -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_run_csv_is_a_clean_table_and_the_summary_a_download_of_its_own(client, reviewer, two_runs):
    first, _ = two_runs
    client.force_login(reviewer)

    rows = csv_rows(client.get(reverse("admin:reconciliation_run_export", args=[first.pk])))
    summary = csv_rows(client.get(reverse("admin:reconciliation_run_summary", args=[first.pk])))

    assert len(rows) == 1 + first.violations_count
    assert all(len(row) == len(rows[0]) and all(cell != "" for cell in row[:2]) for row in rows)
    assert summary[0][:3] == ["run_id", "status", "wallets_checked"]
    record = dict(zip(summary[0], summary[1], strict=True))
    assert record["liability_difference"] == str(first.liability_difference)
    assert record["checksum"] == first.checksum


@pytest.mark.django_db
def test_a_filtered_violation_list_exports_as_csv_with_its_filters(client, gateway, reviewer, two_runs):
    first, _ = two_runs
    put_wallets(gateway, {"=evil": (0, [1])})
    run_now(gateway)
    client.force_login(reviewer)
    listing = client.get(reverse(VIOLATIONS) + "?run__id__exact=all&kind__exact=drift").content.decode()
    export = reverse("admin:reconciliation_violation_export")
    assert f'href="{export}?run__id__exact=all&amp;kind__exact=drift"' in listing

    rows = csv_rows(client.get(export + "?run__id__exact=all&kind__exact=drift"))

    assert rows[0][:3] == ["run_id", "uid", "kind"]
    assert sorted((row[1], row[2]) for row in rows[1:]) == [
        ("'=evil", "drift"),
        ("w1", "drift"),
        ("w1", "drift"),
        ("w1", "drift"),
        ("w2", "drift"),
    ]
    only_first = csv_rows(client.get(export + f"?run__id__exact={first.pk}"))
    assert {row[0] for row in only_first[1:]} == {str(first.pk)}


@pytest.mark.django_db
def test_selected_violations_export_as_csv_with_an_action(client, reviewer, two_runs):
    _, second = two_runs
    client.force_login(reviewer)
    w1 = second.violations.get(uid="w1")

    response = client.post(reverse(VIOLATIONS), {"action": "export_csv", "_selected_action": [w1.pk]})

    rows = csv_rows(response)
    assert [row[1] for row in rows[1:]] == ["w1"]


@pytest.mark.django_db
def test_exports_are_refused_without_the_permission(client, ops, outsider, two_runs):
    first, _ = two_runs
    for user in (ops, outsider):
        client.force_login(user)
        assert client.get(reverse("admin:reconciliation_violation_export")).status_code == 403
        assert client.get(reverse("admin:reconciliation_run_summary", args=[first.pk])).status_code == 403


# -- adjustments ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_adjustment_form_says_it_is_frozen_before_anything_is_typed(client, gateway, reviewer, ops):
    do_freeze(ops, gateway, reason="cutover to v2")
    client.force_login(reviewer)

    response = client.get(reverse("admin:reconciliation_balancerequest_propose"))

    text = response.content.decode()
    assert response.status_code == 200
    assert 'id="propose-frozen"' in text and "cutover to v2" in text
    assert 'name="amount"' not in text
    # The server still refuses a post that was prepared earlier.
    client.post(
        reverse("admin:reconciliation_balancerequest_propose"),
        {"uid": "a", "amount": "5", "reason_code": "goodwill", "reason": "x"},
    )
    assert not BalanceRequest.objects.exists()


@pytest.mark.django_db
def test_the_adjustment_form_takes_the_wallet_from_the_address(client, reviewer):
    client.force_login(reviewer)

    form = client.get(reverse("admin:reconciliation_balancerequest_propose") + "?uid=w7").context["form"]

    assert form["uid"].value() == "w7"


# -- runs ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_run_list_shows_numbers_and_dates_for_people(client, gateway, reviewer):
    put_wallets(gateway, {"big": (2648395, [1000])})
    run = run_now(gateway)
    client.force_login(reviewer)

    page = client.get(reverse(RUNS)).content.decode()

    assert "2,647,395" in cells(page, "drift_display")
    assert "+2,647,395" in cells(page, "liability_display")
    assert f"{when(run.started_at)}" in cells(page, "started")
    assert "Completed" in cells(page, "status_display")


@pytest.mark.django_db
def test_every_page_of_the_area_renders_for_each_role(client, gateway, reviewer, approver, ops, two_runs):
    first, second = two_runs
    request = changes.propose_heals(
        [second.violations.get(uid="w1")], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )[0]
    pages = [
        reverse(RUNS),
        reverse("admin:reconciliation_reconciliationrun_change", args=[first.pk]),
        reverse(VIOLATIONS),
        reverse(VIOLATIONS) + "?run__id__exact=all",
        violation_url(second.violations.get(uid="bad")),
        violation_url(second.violations.get(uid="w1")),
        reverse(QUEUE),
        request_url(request),
        reverse("admin:reconciliation_requestevent_changelist"),
    ]
    for user in (reviewer, approver, ops):
        client.force_login(user)
        for url in pages:
            assert client.get(url).status_code == 200, (user, url)


@pytest.mark.django_db
def test_a_staff_user_without_a_role_is_refused_every_page_of_the_area(
    client, gateway, reviewer, outsider, two_runs
):
    first, second = two_runs
    request = changes.propose_heals(
        [second.violations.get(uid="w1")], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )[0]
    client.force_login(outsider)
    pages = [
        reverse(RUNS),
        reverse("admin:reconciliation_reconciliationrun_change", args=[first.pk]),
        reverse("admin:reconciliation_run_export", args=[first.pk]),
        reverse("admin:reconciliation_run_summary", args=[first.pk]),
        reverse(VIOLATIONS),
        reverse("admin:reconciliation_violation_export"),
        violation_url(second.violations.get(uid="w1")),
        reverse(QUEUE),
        request_url(request),
        decide_url(request),
        reverse("admin:reconciliation_balancerequest_propose"),
        reverse("admin:reconciliation_requestevent_changelist"),
    ]
    for url in pages:
        assert client.get(url).status_code == 403, url


@pytest.mark.django_db
def test_before_any_run_completes_the_violation_list_is_simply_empty(client, reviewer):
    client.force_login(reviewer)

    response = client.get(reverse(VIOLATIONS))

    assert response.status_code == 200 and list(response.context["cl"].result_list) == []
