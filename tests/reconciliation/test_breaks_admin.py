"""The Breaks admin (list, filters, page, actions, CSV) and `manage.py breaks`,
through real HTTP, per role."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from reconciliation import break_actions, services
from reconciliation.models import BalanceRequest, Break, BreakNote, RunTrigger
from tests.helpers import csp_refusals, firestore_client, put_wallets

LIST = reverse("admin:reconciliation_break_changelist")


def reconcile(gateway, uids=None):
    """A run, and the task it enqueues after its commit (the probable causes)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway, uids=uids)


def page(uid):
    return reverse("admin:reconciliation_break_change", args=[Break.objects.get(uid=uid).pk])


def listed(response):
    return [b.uid for b in response.context["cl"].result_list]


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def post_action(client, action, *uids, follow=True, **fields):
    ids = [Break.objects.get(uid=uid).pk for uid in uids]
    return client.post(LIST, {"action": action, "_selected_action": ids, **fields}, follow=follow)


@pytest.fixture
def three(gateway):
    """Open breaks of different ages and sizes, and a closed one."""
    put_wallets(gateway, {"old": (105, [100]), "big": (1300, [100]), "small": (3, [1]), "gone": (9, [1])})
    reconcile(gateway)
    now = timezone.now()
    Break.objects.filter(uid="old").update(first_seen=now - timedelta(days=12))
    Break.objects.filter(uid="gone").update(first_seen=now - timedelta(days=40))
    firestore_client(gateway.project).collection("wallets").document("gone").update({"points": 1})
    reconcile(gateway, uids=["gone"])
    return {b.uid: b for b in Break.objects.all()}


@pytest.mark.django_db
def test_every_break_page_renders_without_inline_script_or_style(client, three, reviewer):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    urls = [
        LIST,
        *(
            f"{LIST}?{query}"
            for query in (
                "status=not_closed",
                "status=closed",
                "age=8-30",
                "severity=critical",
                "kind__exact=drift",
                "owner=mine",
                "owner=nobody",
                "cause=unexplained",
                "cause=pending",
                "resolution__exact=cleared",
                "q=big",
            )
        ),
        page("old"),
        page("gone"),
        reverse("admin:reconciliation_violation_changelist"),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert csp_refusals(response.content.decode()) == [], url


@pytest.mark.django_db
def test_the_list_shows_open_breaks_first_oldest_then_largest(client, three, reviewer):
    client.force_login(reviewer)

    response = client.get(LIST)

    assert listed(response) == ["old", "big", "small", "gone"]
    assert listed(client.get(LIST + "?status=not_closed")) == ["old", "big", "small"]
    assert listed(client.get(LIST + "?age=8-30")) == ["old"]
    assert listed(client.get(LIST + "?age=over-30")) == ["gone"]
    assert listed(client.get(LIST + "?severity=high")) == ["big"]
    assert listed(client.get(LIST + "?q=small")) == ["small"]
    body = response.content.decode()
    assert "+1,200" in body and "12 days" in body


@pytest.mark.django_db
def test_mine_lists_the_breaks_of_whoever_is_looking(client, three, reviewer):
    break_actions.take([three["big"].pk], actor=reviewer)
    client.force_login(reviewer)

    assert listed(client.get(LIST + "?owner=mine")) == ["big"]
    assert listed(client.get(LIST + "?owner=nobody")) == ["old", "small", "gone"]


@pytest.mark.django_db
def test_a_break_page_shows_its_sightings_chart_cause_and_notes(client, gateway, reviewer):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    first = reconcile(gateway)
    firestore_client(gateway.project).collection("wallets").document("w1").update({"points": 150})
    second = reconcile(gateway)
    brk = Break.objects.get()
    break_actions.add_note(brk.pk, actor=reviewer, text="asked the points team")
    client.force_login(reviewer)

    body = client.get(page("w1")).content.decode()

    assert 'id="break-chart"' in body and "<polyline" in body
    assert 'aria-label="Delta at each of 2 sightings, from +10 to +30"' in body
    for run in (first, second):
        assert reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk]) in body
    assert "+20" in body  # the change between the two sightings
    assert brk.cause == "unexplained" and brk.cause_text in body
    assert "asked the points team" in body and "alice" in body
    assert 'id="break-take"' in body and 'id="break-acknowledge"' in body
    assert 'id="break-accept"' not in body  # reviewers do not accept


@pytest.mark.django_db
def test_the_violation_list_links_each_violation_to_its_break(client, three, reviewer):
    client.force_login(reviewer)

    body = client.get(
        reverse("admin:reconciliation_violation_changelist") + "?run__id__exact=all"
    ).content.decode()

    for uid in ("old", "big", "small", "gone"):
        assert f'href="{page(uid)}" class="break-link">Break {Break.objects.get(uid=uid).pk}</a>' in body


@pytest.mark.django_db
def test_a_reviewer_takes_acknowledges_and_assigns_from_the_list(client, three, reviewer, django_user_model):
    colleague = django_user_model.objects.create_user("erin", is_staff=True)
    colleague.groups.set(reviewer.groups.all())
    client.force_login(reviewer)

    response = post_action(client, "take", "old")
    assert "1 break(s) taken: they are yours." in messages_of(response)
    assert (Break.objects.get(uid="old").owner, Break.objects.get(uid="old").status) == (
        reviewer,
        "acknowledged",
    )

    form = post_action(client, "assign", "big", "small")
    assert form.status_code == 200 and 'id="break-assign-form"' in form.content.decode()
    response = post_action(client, "assign", "big", "small", assign="1", owner=colleague.pk)
    assert "2 break(s) assigned to erin." in messages_of(response)
    assert {b.owner for b in Break.objects.filter(uid__in=["big", "small"])} == {colleague}

    response = post_action(client, "acknowledge", "big")
    assert "assigned to erin: only its owner acknowledges it" in messages_of(response)[0]
    assert Break.objects.get(uid="big").status == "open"


@pytest.mark.django_db
def test_a_note_is_added_from_the_break_page_by_reviewers_only(client, three, reviewer, approver, ops):
    url = reverse("admin:reconciliation_break_note", args=[three["old"].pk])
    for user in (approver, ops):
        client.force_login(user)
        assert client.post(url, {"text": "mine"}).status_code == 403
    client.force_login(reviewer)

    response = client.post(url, {"text": "the batch job of the 12th failed"}, follow=True)

    assert "Note added." in messages_of(response)
    assert BreakNote.objects.get(brk=three["old"]).text == "the batch job of the 12th failed"


@pytest.mark.django_db
def test_approvers_accept_with_a_reason_and_reviewers_cannot(client, three, reviewer, approver):
    client.force_login(reviewer)
    response = post_action(client, "accept", "small", accept="1", reason="immaterial")
    assert Break.objects.get(uid="small").status == "open"
    assert "No action selected." in messages_of(response)

    client.force_login(approver)
    body = client.get(page("small")).content.decode()
    assert 'id="break-accept"' in body and 'id="break-take"' not in body
    no_reason = post_action(client, "accept", "small", accept="1", reason="")
    assert no_reason.status_code == 200 and "This field is required." in no_reason.content.decode()
    response = post_action(client, "accept", "small", accept="1", reason="immaterial, below 5 points")

    assert "1 break(s) accepted and closed." in messages_of(response)
    brk = Break.objects.get(uid="small")
    assert (brk.status, brk.resolution, brk.accepted_by, brk.accepted_reason) == (
        "closed",
        "accepted",
        approver,
        "immaterial, below 5 points",
    )


@pytest.mark.django_db
def test_a_reviewer_proposes_one_heal_request_per_selected_break(client, three, reviewer):
    client.force_login(reviewer)

    form = post_action(client, "propose_heal", "old", "big")
    assert 'id="break-propose_heal-form"' in form.content.decode()
    response = post_action(
        client, "propose_heal", "old", "big", propose="1", strategy="rebalance", reason="x"
    )

    assert "2 heal request(s) proposed; another person approves them." in messages_of(response)
    heals = {r.uid: r for r in BalanceRequest.objects.all()}
    assert set(heals) == {"old", "big"}
    assert heals["big"].violation == Break.objects.get(uid="big").sightings.get().violation
    assert {r.state for r in heals.values()} == {"proposed"}


ACTIONS = {
    "take": {},
    "acknowledge": {},
    "assign": {"assign": "1"},
    "propose_heal": {"propose": "1", "strategy": "rebalance", "reason": "x"},
    "accept": {"accept": "1", "reason": "written off"},
}
ALLOWED = {
    "take": {"reviewer"},
    "acknowledge": {"reviewer"},
    "assign": {"reviewer"},
    "propose_heal": {"reviewer"},
}


@pytest.mark.django_db
@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("role", ["reviewer", "approver", "ops", "outsider"])
def test_the_permission_boundary_of_every_list_action_per_role(
    request, client, three, reviewer, role, action
):
    user = request.getfixturevalue(role)
    fields = dict(ACTIONS[action])
    if action == "assign":
        fields["owner"] = reviewer.pk
    client.force_login(user)

    response = post_action(client, action, "old", **fields)

    allowed = ALLOWED.get(action, {"approver"})
    if role == "outsider":
        assert response.status_code == 403  # no view permission: no list at all
    elif role in allowed:
        assert BreakNote.objects.filter(brk=three["old"], author=user).exists(), messages_of(response)
    else:
        # Approvers and reviewers are offered other actions; ops none at all.
        assert messages_of(response) == ([] if role == "ops" else ["No action selected."])
        assert not BreakNote.objects.filter(author__isnull=False).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role, sees, exports",
    [("reviewer", True, True), ("approver", True, True), ("ops", True, False), ("outsider", False, False)],
)
def test_who_sees_and_who_exports_the_breaks_per_role(request, client, three, role, sees, exports):
    client.force_login(request.getfixturevalue(role))
    expected = 200 if sees else 403

    assert client.get(LIST).status_code == expected
    assert client.get(page("old")).status_code == expected
    export = client.get(reverse("admin:reconciliation_break_export"))
    assert export.status_code == (200 if exports else 403)
    if exports:
        rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
        assert sorted(r[1] for r in rows[1:]) == ["big", "gone", "old", "small"]  # closed ones too
    note = client.post(
        reverse("admin:reconciliation_break_note", args=[three["old"].pk]), {"text": f"looked by {role}"}
    )
    assert note.status_code == (302 if role == "reviewer" else 403)
    assert BreakNote.objects.filter(text=f"looked by {role}").exists() == (role == "reviewer")


@pytest.mark.django_db
def test_ops_see_breaks_and_change_nothing(client, three, ops, outsider):
    client.force_login(ops)
    response = client.get(LIST)
    assert response.status_code == 200
    assert [
        name for name, _ in response.context["cl"].model_admin.get_action_choices(response.wsgi_request)
    ] == [""]
    assert client.get(page("old")).status_code == 200
    assert client.get(reverse("admin:reconciliation_break_export")).status_code == 403
    client.force_login(outsider)
    assert client.get(page("old")).status_code == 403


@pytest.mark.django_db
def test_the_csv_export_is_the_list_as_filtered(client, three, reviewer):
    client.force_login(reviewer)

    response = client.get(reverse("admin:reconciliation_break_export") + "?status=not_closed")

    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:7] == ["id", "uid", "status", "resolution", "kind", "severity", "delta"]
    assert [(r[1], r[2], r[6]) for r in rows[1:]] == [
        ("old", "open", "5"),
        ("big", "open", "1200"),
        ("small", "open", "2"),
    ]
    assert rows[1][rows[0].index("age_bucket")] == "8-30"


@pytest.mark.django_db
def test_the_command_prints_the_breaks_as_json(three, reviewer):
    break_actions.take([three["big"].pk], actor=reviewer)

    def run(*args):
        out = io.StringIO()
        call_command("breaks", *args, stdout=out)
        return out.getvalue()

    opened = json.loads(run("--json"))
    assert list(opened) == ["breaks"]
    assert [b["uid"] for b in opened["breaks"]] == ["old", "big", "small"]
    big = opened["breaks"][1]
    assert list(big) == [
        "id",
        "uid",
        "status",
        "kind",
        "delta",
        "first_seen",
        "last_seen",
        "age_days",
        "sightings",
        "owner",
        "cause",
        "resolution",
        "healed_by",
        "corrections",
    ]
    assert (big["status"], big["delta"], big["owner"], big["sightings"], big["resolution"]) == (
        "acknowledged",
        1200,
        "alice",
        1,
        None,
    )
    assert opened["breaks"][0]["age_days"] == 12
    assert big["cause"]["code"] == "unexplained"
    closed = json.loads(run("--status", "closed", "--json"))["breaks"]
    assert [(b["uid"], b["resolution"], b["age_days"]) for b in closed] == [("gone", "cleared", 40)]
    assert len(json.loads(run("--status", "all", "--json"))["breaks"]) == 4
    text = run()
    assert "#" in text and "big: acknowledged, drift delta 1200" in text


def sorted_by(client, url, column, descending=True):
    """The list sorted by one column header, as a click on it asks (o=-N)."""
    names = client.get(url).context["cl"].list_display
    index = names.index(column)
    return client.get(url, {"o": f"{'-' if descending else ''}{index}"})


@pytest.mark.django_db
def test_the_break_list_sorts_by_severity_as_a_rank_and_by_size(client, three, reviewer):
    client.force_login(reviewer)
    by_severity = sorted_by(client, LIST, "severity_display")
    severities = [b.severity for b in by_severity.context["cl"].result_list]
    assert severities == ["high", "medium", "medium", "low"]  # not alphabetical (medium, low, high)
    by_size = sorted_by(client, LIST, "delta_display")
    assert listed(by_size) == ["big", "gone", "old", "small"]
    assert "+1,200" in by_size.content.decode()


@pytest.mark.django_db
def test_the_violation_list_sorts_by_size_whatever_the_sign(client, gateway, reviewer):
    put_wallets(gateway, {"big": (1300, [100]), "neg": (50, [550]), "small": (3, [1])})
    reconcile(gateway)
    client.force_login(reviewer)
    response = sorted_by(client, reverse("admin:reconciliation_violation_changelist"), "delta_display")
    assert [v.uid for v in response.context["cl"].result_list] == ["big", "neg", "small"]
    assert "\u2212500" in response.content.decode()
