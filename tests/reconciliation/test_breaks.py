"""Breaks across runs: opened, seen, closed (healed, cleared, accepted), reopened;
their age and severity; what each role may do with them."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from reconciliation import break_actions, break_age, breaks, changes, services
from reconciliation.checks import break_settings
from reconciliation.models import (
    Break,
    BreakNote,
    BreakSighting,
    RequestState,
    RunTrigger,
    TrackedRun,
)
from revassure.sealing.models import FinishedRecordError
from tests.helpers import firestore_client, put_wallets

# Runs happen on later days by travelling forward from here (never back: the
# gRPC client computes its deadlines from the clock time-machine moves).
DAY0 = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)


def on_day(day):
    return time_machine.travel(DAY0 + timedelta(days=day), tick=True)


def reconcile(gateway, uids=None, *, day=None):
    if day is None:
        return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway, uids=uids)
    with on_day(day):
        return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway, uids=uids)


def set_points(gateway, uid, points):
    firestore_client(gateway.project).collection("wallets").document(uid).update({"points": points})


def the_break(uid="w1"):
    return Break.objects.get(uid=uid)


@pytest.fixture
def run_tasks(django_capture_on_commit_callbacks):
    """Commit callbacks (the task enqueues) run as they would after a real commit."""

    def run(func, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return func(*args, **kwargs)

    return run


# -- across runs -------------------------------------------------------------------


@pytest.mark.django_db
def test_the_same_drift_seen_by_three_runs_is_one_break_with_three_sightings(gateway):
    put_wallets(gateway, {"w1": (130, [100, 20]), "ok": (5, [5])})

    runs = [reconcile(gateway, day=day) for day in (0, 1, 2)]

    brk = the_break()
    assert Break.objects.count() == 1
    assert (brk.status, brk.kind, brk.delta, brk.sightings_count) == ("open", "drift", 10, 3)
    assert (brk.first_run, brk.last_run) == (runs[0], runs[2])
    assert brk.first_seen == runs[0].started_at and brk.last_seen == runs[2].started_at
    sightings = list(brk.sightings.all())
    assert [s.run_id for s in sightings] == [r.pk for r in runs]
    assert [s.violation for s in sightings] == [r.violations.get(uid="w1") for r in runs]
    assert break_age.age_days(brk, now=DAY0 + timedelta(days=2, hours=1)) == 2


@pytest.mark.django_db
def test_each_sighting_keeps_the_points_ledger_sum_and_delta_it_saw(gateway):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    reconcile(gateway, day=0)
    set_points(gateway, "w1", 150)
    reconcile(gateway, day=1)

    brk = the_break()
    assert [
        (s.violation.wallet_points, s.violation.ledger_sum, s.violation.delta) for s in brk.sightings.all()
    ] == [
        (130, 120, 10),
        (150, 120, 30),
    ]
    assert (brk.wallet_points, brk.delta, brk.size, brk.sightings_count) == (150, 30, 30, 2)


@pytest.mark.django_db
def test_a_wallet_fixed_behind_our_back_closes_as_cleared_at_the_next_run_that_checks_it(gateway):
    put_wallets(gateway, {"w1": (130, [100, 20]), "w2": (1, [1])})
    reconcile(gateway, day=0)
    set_points(gateway, "w1", 120)  # someone else fixed it

    reconcile(gateway, uids=["w2"], day=1)  # does not check w1
    assert the_break().status == "open"
    closing = reconcile(gateway, uids=["w1"], day=2)

    brk = the_break()
    assert (brk.status, brk.resolution, brk.closed_by_run, brk.watching) == (
        "closed",
        "cleared",
        closing,
        False,
    )
    assert brk.heal_request is None
    assert brk.sightings_count == 1
    assert (
        BreakNote.objects.filter(brk=brk, action="close")
        .get()
        .text.endswith("cleared, clean without a heal of ours.")
    )


@pytest.mark.django_db
def test_an_applied_heal_closes_the_break_as_healed_at_the_next_run_with_the_request_linked(
    gateway, reviewer, approver, run_tasks
):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    reconcile(gateway, day=0)
    brk = the_break()
    with on_day(0.5):
        [request] = break_actions.propose_heal(
            [brk.pk], actor=reviewer, strategy="rebalance", reason="points app double credit", gateway=gateway
        )
        run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)
    request.refresh_from_db()
    assert request.state == RequestState.APPLIED
    assert request.violation == brk.sightings.get().violation
    assert the_break().status == "open"  # closed by the report that confirms it, not by the request

    reconcile(gateway, day=1)

    brk = the_break()
    assert (brk.status, brk.resolution, brk.heal_request) == ("closed", "healed", request)
    assert list(break_actions.heals_of(brk)) == [request]


@pytest.mark.django_db
def test_a_heal_of_a_violation_from_the_violation_pages_heals_its_break_too(
    gateway, reviewer, approver, run_tasks
):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    run = reconcile(gateway, day=0)
    with on_day(0.5):
        [request] = changes.propose_heals(
            [run.violations.get()], actor=reviewer, strategy="post_adjustment", reason="x", gateway=gateway
        )
        run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)

    reconcile(gateway, day=1)

    assert (the_break().resolution, the_break().heal_request) == ("healed", request)


@pytest.mark.django_db
def test_a_heal_applied_before_a_run_that_still_finds_drift_does_not_heal_the_break(
    gateway, reviewer, approver, run_tasks
):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    reconcile(gateway, day=0)
    with on_day(0.5):
        [request] = break_actions.propose_heal(
            [the_break().pk], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
        )
        run_tasks(changes.approve, request.pk, actor=approver, gateway=gateway)
    set_points(gateway, "w1", 125)  # drifts again after the heal
    reconcile(gateway, day=1)
    set_points(gateway, "w1", 120)  # and someone else fixes it

    reconcile(gateway, day=2)

    brk = the_break()
    assert (brk.status, brk.resolution, brk.heal_request, brk.sightings_count) == (
        "closed",
        "cleared",
        None,
        2,
    )


@pytest.mark.django_db
def test_an_accepted_break_is_not_reopened_by_the_same_delta_and_is_by_a_different_one(gateway, approver):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    reconcile(gateway, day=0)
    break_actions.accept([the_break().pk], actor=approver, reason="goodwill credit of 2019, written off")

    reconcile(gateway, day=1)
    brk = the_break()
    assert (brk.status, brk.resolution, brk.accepted_delta, brk.sightings_count) == (
        "closed",
        "accepted",
        10,
        2,
    )
    assert break_age.open_by_bucket() == {"0-1": 0, "2-7": 0, "8-30": 0, "over-30": 0}

    set_points(gateway, "w1", 135)
    reconcile(gateway, day=2)

    brk = the_break()
    assert Break.objects.count() == 1
    assert (brk.status, brk.resolution, brk.delta, brk.sightings_count) == ("open", "", 15, 3)
    assert brk.accepted_delta is None
    reopen = BreakNote.objects.get(brk=brk, action="reopen")
    assert "the delta is now +15, not the +10 bob accepted" in reopen.text
    assert "goodwill credit of 2019" in reopen.text


@pytest.mark.django_db
def test_an_accepted_break_found_clean_is_no_longer_watched_and_later_drift_opens_a_new_one(
    gateway, approver
):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    reconcile(gateway, day=0)
    break_actions.accept([the_break().pk], actor=approver, reason="written off")
    set_points(gateway, "w1", 120)
    reconcile(gateway, day=1)
    set_points(gateway, "w1", 130)  # the same delta again, after a clean check

    reconcile(gateway, day=2)

    first, second = Break.objects.order_by("pk")
    assert (first.status, first.resolution, first.watching) == ("closed", "accepted", False)
    assert (second.status, second.delta, second.sightings_count) == ("open", 10, 1)


@pytest.mark.django_db
def test_a_wallet_that_drifts_again_after_closing_opens_a_second_break(gateway):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    reconcile(gateway, day=0)
    set_points(gateway, "w1", 120)
    reconcile(gateway, day=1)
    set_points(gateway, "w1", 90)

    third = reconcile(gateway, day=5)

    first, second = Break.objects.filter(uid="w1").order_by("pk")
    assert (first.status, first.resolution) == ("closed", "cleared")
    assert (second.status, second.delta, second.first_run, second.sightings_count) == ("open", -30, third, 1)
    assert second.first_seen == third.started_at


@pytest.mark.django_db
def test_malformed_wallets_open_malformed_breaks(gateway):
    put_wallets(gateway, {"bad": (125, [100, "25"]), "text": ("100", [100])})

    reconcile(gateway)

    assert {b.uid: (b.kind, b.delta) for b in Break.objects.all()} == {
        "bad": ("malformed", 25),
        "text": ("malformed", None),
    }


@pytest.mark.django_db
def test_a_run_is_taken_in_once(gateway):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    run = reconcile(gateway)

    assert breaks.track_run(run) is None

    assert BreakSighting.objects.count() == 1
    assert the_break().sightings_count == 1
    tracked = TrackedRun.objects.get()
    assert (tracked.run, tracked.opened, tracked.seen, tracked.closed) == (run, 1, 0, 0)


@pytest.mark.django_db
def test_a_run_the_tracker_missed_is_taken_in_before_the_next(gateway, settings):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    reconcile(gateway, day=0)
    settings.BREAK_TRACKING = False  # as if the tracker died after the seal
    missed = reconcile(gateway, day=1)
    assert the_break().sightings_count == 1
    settings.BREAK_TRACKING = True

    reconcile(gateway, day=2)

    brk = the_break()
    assert brk.sightings_count == 3
    assert missed.pk in brk.sightings.values_list("run_id", flat=True)


@pytest.mark.django_db
def test_with_tracking_off_runs_open_no_breaks(gateway, settings):
    settings.BREAK_TRACKING = False
    put_wallets(gateway, {"w1": (130, [100, 20])})

    run = reconcile(gateway)

    assert run.violations_count == 1
    assert not Break.objects.exists() and not TrackedRun.objects.exists()


@pytest.mark.django_db
def test_notes_are_append_only_in_the_database_too(gateway, reviewer):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    reconcile(gateway)
    note = break_actions.add_note(the_break().pk, actor=reviewer, text="asked the points team")

    with pytest.raises(FinishedRecordError):
        note.save()
    with pytest.raises(FinishedRecordError):
        note.delete()
    with pytest.raises(Exception, match="append-only"), connection.cursor() as cursor:
        cursor.execute("UPDATE reconciliation_breaknote SET text = 'nothing' WHERE id = %s", [note.pk])


# -- age and severity ----------------------------------------------------------------


@pytest.mark.django_db
def test_open_breaks_are_counted_by_age_bucket(gateway, approver):
    # Ages set on the rows: travelling runs weeks ahead would overflow gRPC's deadlines.
    ages = {"a": 0, "b": 1, "c": 2, "d": 7, "e": 8, "f": 30, "g": 31, "h": 400, "accepted": 90}
    put_wallets(gateway, {uid: (5, []) for uid in ages})
    reconcile(gateway)
    now = timezone.now() + timedelta(days=1000)
    for uid, days in ages.items():
        Break.objects.filter(uid=uid).update(first_seen=now - timedelta(days=days, hours=1))
    break_actions.accept([the_break("accepted").pk], actor=approver, reason="written off")

    assert break_age.open_by_bucket(now=now) == {"0-1": 2, "2-7": 2, "8-30": 2, "over-30": 2}
    assert break_age.oldest_open_days(now=now) == 400


@pytest.mark.django_db
@pytest.mark.parametrize(
    "points, days, expected",
    [
        (5, 0, "low"),
        (100, 0, "medium"),
        (1000, 0, "high"),
        (5, 8, "medium"),
        (100, 8, "high"),
        (1000, 8, "critical"),
        (5, 7, "low"),
    ],
)
def test_severity_grows_with_the_size_and_the_age_and_the_database_agrees(gateway, points, days, expected):
    put_wallets(gateway, {"w1": (points, [])})
    reconcile(gateway, day=0)
    now = DAY0 + timedelta(days=days, hours=1)

    brk = break_age.annotate(Break.objects.all(), now).get()

    assert break_age.severity(brk, now) == expected
    assert brk.severity == expected
    assert brk.age_bucket == break_age.age_bucket(days)


def test_the_age_buckets_follow_the_setting(settings):
    settings.BREAK_AGE_BUCKETS = [3, 10]
    assert break_age.bucket_names() == ["0-3", "4-10", "over-10"]
    assert [break_age.age_bucket(d) for d in (0, 3, 4, 10, 11)] == ["0-3", "0-3", "4-10", "4-10", "over-10"]
    assert break_age.bucket_label("over-10") == "over 10 days"


# -- what people do, and who may ------------------------------------------------------


@pytest.fixture
def open_break(gateway):
    put_wallets(gateway, {"w1": (130, [100, 20])})
    reconcile(gateway)
    return the_break()


@pytest.mark.django_db
def test_a_reviewer_takes_assigns_and_notes_and_each_step_is_on_record(
    open_break, reviewer, django_user_model
):
    colleague = django_user_model.objects.create_user("erin", is_staff=True)
    colleague.groups.set(reviewer.groups.all())

    break_actions.assign([open_break.pk], owner=colleague, actor=reviewer)
    brk = the_break()
    assert (brk.owner, brk.status) == (colleague, "open")
    with pytest.raises(break_actions.BreakRefused, match="assigned to erin"):
        break_actions.acknowledge([brk.pk], actor=reviewer)
    break_actions.acknowledge([brk.pk], actor=colleague)
    assert the_break().status == "acknowledged"
    break_actions.take([brk.pk], actor=reviewer)
    assert (the_break().owner, the_break().status) == (reviewer, "acknowledged")
    break_actions.add_note(brk.pk, actor=reviewer, text="points team says a batch job failed")

    notes = [(n.action, n.author, n.text) for n in BreakNote.objects.filter(brk=brk)]
    assert notes == [
        ("assign", reviewer, "Assigned to erin"),
        ("acknowledge", colleague, "Acknowledged by erin"),
        ("take", reviewer, "Taken by alice (was erin)"),
        ("note", reviewer, "points team says a batch job failed"),
    ]


@pytest.mark.django_db
def test_breaks_are_assigned_only_to_people_who_can_work_on_them(open_break, reviewer, approver, ops):
    for owner in (approver, ops):
        with pytest.raises(break_actions.BreakRefused, match="assign them to a finance reviewer"):
            break_actions.assign([open_break.pk], owner=owner, actor=reviewer)


@pytest.mark.django_db
def test_reviewers_cannot_accept_and_approvers_can_with_a_reason(open_break, reviewer, approver):
    with pytest.raises(PermissionError):
        break_actions.accept([open_break.pk], actor=reviewer, reason="write it off")
    with pytest.raises(break_actions.BreakRefused, match="reason is required"):
        break_actions.accept([open_break.pk], actor=approver, reason="  ")

    break_actions.accept([open_break.pk], actor=approver, reason="below materiality")

    brk = the_break()
    assert (brk.status, brk.resolution, brk.accepted_by, brk.accepted_reason) == (
        "closed",
        "accepted",
        approver,
        "below materiality",
    )
    assert brk.closed_at is not None and brk.watching
    assert (
        BreakNote.objects.get(brk=brk, action="accept").text
        == "Accepted a difference of +10: below materiality"
    )


@pytest.mark.django_db
def test_a_difference_with_a_heal_open_or_malformed_points_cannot_be_accepted(gateway, reviewer, approver):
    put_wallets(gateway, {"w1": (130, [100, 20]), "text": ("1", [1])})
    reconcile(gateway)
    break_actions.propose_heal(
        [the_break().pk], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
    )

    with pytest.raises(break_actions.BreakRefused, match="w1: its wallet has heal #\\d+ open"):
        break_actions.accept([the_break().pk], actor=approver, reason="write-off")
    with pytest.raises(break_actions.BreakRefused, match="malformed"):
        break_actions.accept([the_break("text").pk], actor=approver, reason="write-off")


@pytest.mark.django_db
def test_closed_breaks_are_refused_for_every_action_but_a_note(open_break, reviewer, approver, gateway):
    break_actions.accept([open_break.pk], actor=approver, reason="written off")

    for act in (
        lambda: break_actions.take([open_break.pk], actor=reviewer),
        lambda: break_actions.acknowledge([open_break.pk], actor=reviewer),
        lambda: break_actions.accept([open_break.pk], actor=approver, reason="again"),
        lambda: break_actions.propose_heal(
            [open_break.pk], actor=reviewer, strategy="rebalance", reason="x", gateway=gateway
        ),
    ):
        with pytest.raises(break_actions.BreakRefused, match="closed"):
            act()
    break_actions.add_note(open_break.pk, actor=reviewer, text="finance agreed in the monthly close")


ROLES = ("reviewer", "approver", "ops", "outsider")
ALLOWED = {
    "take": {"reviewer"},
    "acknowledge": {"reviewer"},
    "assign": {"reviewer"},
    "note": {"reviewer"},
    "propose_heal": {"reviewer"},
    "accept": {"approver"},
}


def act(action, brk, user, gateway, reviewer):
    if action == "take":
        return break_actions.take([brk.pk], actor=user)
    if action == "acknowledge":
        return break_actions.acknowledge([brk.pk], actor=user)
    if action == "assign":
        return break_actions.assign([brk.pk], owner=reviewer, actor=user)
    if action == "note":
        return break_actions.add_note(brk.pk, actor=user, text="seen")
    if action == "propose_heal":
        return break_actions.propose_heal(
            [brk.pk], actor=user, strategy="rebalance", reason="x", gateway=gateway
        )
    return break_actions.accept([brk.pk], actor=user, reason="write-off")


@pytest.mark.django_db
@pytest.mark.parametrize("action", list(ALLOWED))
@pytest.mark.parametrize("role", ROLES)
def test_the_permission_boundary_of_every_action_per_role(
    request, open_break, gateway, reviewer, action, role
):
    user = request.getfixturevalue(role)

    if role in ALLOWED[action]:
        act(action, open_break, user, gateway, reviewer)
        assert BreakNote.objects.filter(brk=open_break, author=user).exists()
    else:
        with pytest.raises(PermissionError):
            act(action, open_break, user, gateway, reviewer)
        assert not BreakNote.objects.filter(brk=open_break).exists()


@pytest.mark.django_db
def test_a_heal_proposed_for_breaks_goes_through_maker_checker(open_break, gateway, reviewer, approver):
    reviewer.groups.add(*approver.groups.all())  # holds both roles, still cannot approve their own
    [request] = break_actions.propose_heal(
        [open_break.pk], actor=reviewer, strategy="rebalance", reason="double credit", gateway=gateway
    )

    assert (request.state, request.amount, request.proposed_by) == ("proposed", -10, reviewer)
    with pytest.raises(changes.RequestRefused, match="someone else must approve"):
        changes.approve(request.pk, actor=reviewer, gateway=gateway)
    note = BreakNote.objects.get(brk=open_break, action="propose_heal")
    assert note.text.startswith(f"Heal #{request.pk} proposed (rebalance")
    assert timezone.now() - note.created_at < timedelta(minutes=1)


def test_thresholds_that_do_not_fit_together_fail_the_start_up_checks(settings):
    assert break_settings(None) == []
    settings.BREAK_AGE_BUCKETS = [7, 1]
    settings.BREAK_SEVERITY_MEDIUM_POINTS = 2000
    assert [e.id for e in break_settings(None)] == ["revassure.E020", "revassure.E021"]
