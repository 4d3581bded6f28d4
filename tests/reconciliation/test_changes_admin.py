import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from reconciliation import changes, services
from reconciliation.models import BalanceRequest, RequestState, RunTrigger
from revassure import freeze
from revassure.roles import APPROVER
from tests.helpers import firestore_client, put_wallets

QUEUE = "admin:reconciliation_balancerequest_changelist"


def decide_url(request):
    return reverse("admin:reconciliation_balancerequest_decide", args=[request.pk])


@pytest.fixture
def adjustment(gateway, reviewer):
    put_wallets(gateway, {"a": (10, [10])})
    return changes.propose_adjustment(
        actor=reviewer, uid="a", amount=40, reason_code="goodwill", reason="late parcel", gateway=gateway
    )


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.mark.django_db
def test_every_request_and_freeze_page_renders(client, gateway, adjustment):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    urls = [
        reverse(QUEUE),
        reverse(QUEUE) + "?queue=mine",
        reverse("admin:reconciliation_balancerequest_change", args=[adjustment.pk]),
        decide_url(adjustment),
        reverse("admin:reconciliation_balancerequest_propose"),
        reverse("admin:reconciliation_requestevent_changelist"),
        reverse("admin:revassure_freezeevent_changelist"),
        reverse("admin:revassure_freeze_toggle"),
    ]
    for url in urls:
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_a_reviewer_proposes_an_adjustment_in_the_admin(client, gateway, reviewer):
    put_wallets(gateway, {"a": (10, [10])})
    client.force_login(reviewer)
    url = reverse("admin:reconciliation_balancerequest_propose")

    response = client.post(
        url, {"uid": "a", "amount": "-4", "reason_code": "correction", "reason": "double credit"}, follow=True
    )

    request = BalanceRequest.objects.get()
    assert (request.uid, request.amount, request.proposed_by, request.state) == (
        "a",
        -4,
        reviewer,
        "proposed",
    )
    assert f"Adjustment {request.pk} of \u22124 points for a proposed" in messages_of(response)[0]


@pytest.mark.django_db
def test_the_approver_queue_shows_what_awaits_them_and_one_click_approves(
    client, gateway, adjustment, approver, django_capture_on_commit_callbacks
):
    client.force_login(approver)
    queue = client.get(reverse(QUEUE) + "?queue=mine")
    assert [r.pk for r in queue.context["cl"].result_list] == [adjustment.pk]
    assert "late parcel" in client.get(decide_url(adjustment)).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(decide_url(adjustment), {"approve": "Approve", "reason": ""}, follow=True)

    assert f"Request {adjustment.pk} approved" in messages_of(response)[0]
    adjustment.refresh_from_db()
    assert adjustment.state == RequestState.APPLIED
    assert (
        firestore_client(gateway.project).collection("wallets").document("a").get().to_dict()["points"] == 50
    )
    assert client.get(reverse(QUEUE) + "?queue=mine").context["cl"].result_list.count() == 0
    page = client.get(
        reverse("admin:reconciliation_balancerequest_change", args=[adjustment.pk])
    ).content.decode()
    assert "Proposed → Approved" in page and "Approved → Applied" in page
    # The result as people read it: no "None", no "False".
    assert "Audit log id: —" in page and "Already applied: no" in page and "Points after: 50" in page
    assert "None" not in page and "False" not in page


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["10000000000000000000", "-10000000000000000000"])
def test_an_amount_beyond_64_bits_is_a_form_error_not_a_server_error(client, gateway, reviewer, amount):
    put_wallets(gateway, {"a": (10, [10])})
    client.force_login(reviewer)

    response = client.post(
        reverse("admin:reconciliation_balancerequest_propose"),
        {"uid": "a", "amount": amount, "reason_code": "goodwill", "reason": "x"},
    )

    assert response.status_code == 200
    assert "amount" in response.context["form"].errors
    assert not BalanceRequest.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("allowed", [False, True])
def test_the_adjustment_form_states_the_negative_balance_policy(client, reviewer, settings, allowed):
    settings.BACKFILL_ALLOW_NEGATIVE_BALANCE = allowed
    client.force_login(reviewer)

    form = client.get(reverse("admin:reconciliation_balancerequest_propose")).context["form"]

    expected = "may take a wallet below zero" if allowed else "may not take a wallet below zero"
    assert expected in form.fields["amount"].help_text


@pytest.mark.django_db
def test_an_adjustment_below_zero_is_refused_on_the_form(client, gateway, reviewer):
    put_wallets(gateway, {"a": (100, [100])})
    client.force_login(reviewer)

    response = client.post(
        reverse("admin:reconciliation_balancerequest_propose"),
        {"uid": "a", "amount": "-1000", "reason_code": "correction", "reason": "x"},
    )

    assert "from 100 to \u2212900 points" in response.context["form"].non_field_errors()[0]
    assert not BalanceRequest.objects.exists()


@pytest.mark.django_db
def test_self_approval_is_refused_in_the_admin(client, gateway, adjustment, reviewer):
    reviewer.groups.add(Group.objects.get(name=APPROVER))
    client.force_login(reviewer)
    assert client.get(reverse(QUEUE) + "?queue=mine").context["cl"].result_list.count() == 0

    response = client.post(decide_url(adjustment), {"approve": "Approve"})

    assert "Refused: you proposed this request" in response.context["form"].non_field_errors()[0]
    adjustment.refresh_from_db()
    assert adjustment.state == RequestState.PROPOSED


@pytest.mark.django_db
def test_rejecting_in_the_admin_needs_a_reason(client, adjustment, approver):
    client.force_login(approver)
    refused = client.post(decide_url(adjustment), {"reject": "Reject", "reason": ""})
    assert "A reason is required to reject" in refused.context["form"].errors["reason"][0]

    client.post(decide_url(adjustment), {"reject": "Reject", "reason": "not our fault"})
    adjustment.refresh_from_db()
    assert adjustment.state == RequestState.REJECTED


@pytest.mark.django_db
def test_only_approvers_decide_and_only_reviewers_propose(client, adjustment, reviewer, ops, outsider):
    for user in (reviewer, ops, outsider):
        client.force_login(user)
        assert client.post(decide_url(adjustment), {"approve": "Approve"}).status_code == 403
    for user in (ops, outsider):
        client.force_login(user)
        assert client.get(reverse("admin:reconciliation_balancerequest_propose")).status_code == 403
    adjustment.refresh_from_db()
    assert adjustment.state == RequestState.PROPOSED


@pytest.mark.django_db
def test_propose_heal_action_on_violations(client, gateway, reviewer, approver):
    put_wallets(gateway, {"w1": (130, [120]), "w2": (5, [9])})
    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)
    ids = [str(pk) for pk in run.violations.order_by("uid").values_list("pk", flat=True)]
    url = reverse("admin:reconciliation_violation_changelist")
    client.force_login(reviewer)

    page = client.post(url, {"action": "propose_heal", "_selected_action": ids})
    assert page.status_code == 200 and "Propose heals for 2 violation(s)" in page.content.decode()
    response = client.post(
        url,
        {
            "action": "propose_heal",
            "_selected_action": ids,
            "propose": "1",
            "strategy": "rebalance",
            "reason": "fix",
        },
        follow=True,
    )

    assert "2 heal request(s) proposed" in messages_of(response)[0]
    assert sorted(BalanceRequest.objects.values_list("uid", "amount")) == [("w1", -10), ("w2", 4)]
    # Approvers do not propose: the action is not theirs to run.
    client.force_login(approver)
    refused = client.post(
        url,
        {
            "action": "propose_heal",
            "_selected_action": ids,
            "propose": "1",
            "strategy": "rebalance",
            "reason": "x",
        },
        follow=True,
    )
    assert "Propose heals for" not in refused.content.decode()
    assert BalanceRequest.objects.count() == 2


@pytest.mark.django_db
def test_the_propose_heal_page_says_before_submitting_that_malformed_violations_cannot_be_healed(
    client, gateway, reviewer
):
    put_wallets(gateway, {"w1": (130, [120]), "bad": ("ten", [10])})
    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)
    assert run.violations.get(uid="bad").delta is None  # malformed points: no delta to heal by
    ids = [str(pk) for pk in run.violations.values_list("pk", flat=True)]
    url = reverse("admin:reconciliation_violation_changelist")
    client.force_login(reviewer)

    page = client.post(url, {"action": "propose_heal", "_selected_action": ids})

    assert page.status_code == 200
    text = page.content.decode()
    assert "Propose heals for 1 violation(s)" in text
    assert "bad" in dict(page.context["facts"]) and "cannot be healed" in dict(page.context["facts"])["bad"]
    assert "fix the data first" in page.context["intro"]
    selected = [value for name, value in page.context["hidden"] if name == "_selected_action"]
    assert selected == [run.violations.get(uid="w1").pk]
    response = client.post(
        url,
        {
            "action": "propose_heal",
            "_selected_action": [str(pk) for pk in selected],
            "propose": "1",
            "strategy": "rebalance",
            "reason": "fix",
        },
        follow=True,
    )
    assert "1 heal request(s) proposed" in messages_of(response)[0]
    assert list(BalanceRequest.objects.values_list("uid", flat=True)) == ["w1"]


@pytest.mark.django_db
def test_the_propose_heal_page_offers_no_proposal_when_only_malformed_violations_are_selected(
    client, gateway, reviewer
):
    put_wallets(gateway, {"bad": (10, [5, "5"]), "text": ("ten", [10])})
    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)
    ids = [str(pk) for pk in run.violations.values_list("pk", flat=True)]
    client.force_login(reviewer)

    page = client.post(
        reverse("admin:reconciliation_violation_changelist"),
        {"action": "propose_heal", "_selected_action": ids},
    )

    assert page.status_code == 200
    assert page.context["buttons"] == []
    assert "None of the 2 selected violations can be healed" in page.context["intro"]
    assert not BalanceRequest.objects.exists()


@pytest.mark.django_db
def test_ops_freeze_from_the_admin_and_every_page_shows_the_banner(
    client, gateway, ops, reviewer, adjustment
):
    client.force_login(ops)
    toggle = reverse("admin:revassure_freeze_toggle")
    assert "reason" in client.post(toggle, {"state": "freeze", "reason": ""}).context["form"].errors

    client.post(toggle, {"state": "freeze", "reason": "cutover to points v2"})

    assert freeze.current().reason == "cutover to points v2"
    client.force_login(reviewer)
    for url in (
        reverse("admin:index"),
        reverse(QUEUE),
        reverse("admin:reconciliation_reconciliationrun_changelist"),
    ):
        page = client.get(url).content.decode()
        assert "Manual balance changes are FROZEN" in page and "by olga: cutover to points v2" in page, url
    response = client.post(
        reverse("admin:reconciliation_balancerequest_propose"),
        {"uid": "a", "amount": "5", "reason_code": "goodwill", "reason": "x"},
    )
    assert "frozen since" in response.content.decode()
    assert BalanceRequest.objects.count() == 1

    client.force_login(ops)
    client.post(toggle, {"state": "unfreeze", "reason": "cutover done"})
    assert freeze.current() is None
    assert "FROZEN" not in client.get(reverse("admin:index")).content.decode()


@pytest.mark.django_db
def test_only_ops_may_freeze(client, reviewer, approver):
    for user in (reviewer, approver):
        client.force_login(user)
        response = client.post(reverse("admin:revassure_freeze_toggle"), {"state": "freeze", "reason": "x"})
        assert response.status_code == 403
    assert freeze.current() is None


@pytest.mark.django_db
def test_a_request_page_shows_the_correlation_id_of_each_step(
    client, gateway, reviewer, approver, django_capture_on_commit_callbacks
):
    """A person finds a request's log lines by the id on its page: the proposal's,
    and each later step's on its line of the history."""
    put_wallets(gateway, {"a": (10, [10])})
    client.force_login(reviewer)
    client.post(
        reverse("admin:reconciliation_balancerequest_propose"),
        {"uid": "a", "amount": "5", "reason_code": "goodwill", "reason": "late parcel"},
        HTTP_X_REQUEST_ID="propose-0001-abcd",
    )
    request = BalanceRequest.objects.get()
    client.force_login(approver)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            decide_url(request), {"approve": "Approve", "reason": ""}, HTTP_X_REQUEST_ID="approve-0002-abcd"
        )

    request.refresh_from_db()
    assert request.correlation_id == "propose-0001-abcd"
    assert [e.correlation_id for e in request.events.all()][:2] == ["propose-0001-abcd", "approve-0002-abcd"]
    page = client.get(
        reverse("admin:reconciliation_balancerequest_change", args=[request.pk])
    ).content.decode()
    assert "propose-0001-abcd" in page and "approve-0002-abcd" in page
