"""'Waiting for me': what each role's inbox shows and what it does not, the counts
on the dashboard and in the header, and the email sent once when something
starts waiting (real SMTP server on loopback, real Firestore emulator)."""

import socket
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone

from backfill import file_replay, plan_approval, run_requests
from cutover import services as cutover
from cutover.models import StepState
from observability import inbox, recovery, tasks
from observability.models import Alert, AlertRule, AlertState, InboxNotice, RuleName
from reconciliation import break_actions, change_queries, changes, services
from reconciliation.models import Break, ReasonCode, RunTrigger
from revassure import outbox
from revassure.models import WaitingAnnouncement
from revassure.roles import APPROVER, REVIEWER
from revassure.waiting import WaitingKind
from settlement import actions as settlement
from settlement.models import Outcome, RunStatus, SettlementRow, SettlementRun
from tests.helpers import csp_refusals, event_line, put_wallets

INBOX = "/admin/observability/inbox/"


@pytest.fixture(autouse=True)
def quiet(db, settings, tmp_path):
    """Alert rules off (a test opens its own alerts); snapshots in a temporary directory."""
    AlertRule.objects.update(enabled=False)
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"


@pytest.fixture
def maker_checker(db):
    """dora: a reviewer and an approver at once (she may propose and decide)."""
    user = User.objects.create_user("dora", "dora@example.com", "password", is_staff=True)
    user.groups.add(Group.objects.get(name=REVIEWER), Group.objects.get(name=APPROVER))
    return user


@pytest.fixture
def world(gateway, reviewer, approver, ops, maker_checker):
    """One of each kind of item:

    - an adjustment proposed by alice (reviewer) and one by dora (reviewer and approver);
    - a break on w1 (130 points against a ledger of 120), taken by alice;
    - a settlement run with a points mismatch, an unreversed refund, a replayable
      missing row, a missing row without a delivery, a matched row, and a
      user mismatch already explained;
    - open alerts: drift (finance's), a failed job (ops'); and one acknowledged.
    """
    put_wallets(gateway, {"w1": (130, [100, 20]), "w2": (50, [50]), "w3": (7, [7])})
    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)
    brk = Break.objects.get(uid="w1")
    break_actions.take([brk.pk], actor=reviewer)
    by_alice = changes.propose_adjustment(
        actor=reviewer,
        uid="w2",
        amount=10,
        reason_code=ReasonCode.GOODWILL,
        reason="late flight",
        gateway=gateway,
    )
    by_dora = changes.propose_adjustment(
        actor=maker_checker,
        uid="w3",
        amount=-5,
        reason_code=ReasonCode.CORRECTION,
        reason="typo",
        gateway=gateway,
    )
    statement = SettlementRun.objects.create(
        status=RunStatus.RUNNING, trigger="command", source="s.csv", file_sha256="a" * 64
    )
    for line, outcome, replayable in [
        (1, Outcome.POINTS_MISMATCH, False),
        (2, Outcome.UNREVERSED, False),
        (3, Outcome.MISSING_IN_LEDGER, True),
        (4, Outcome.MISSING_IN_LEDGER, False),
        (5, Outcome.MATCHED, False),
        (6, Outcome.USER_MISMATCH, False),
    ]:
        SettlementRow.objects.create(
            run=statement, line=line, outcome=outcome, replayable=replayable, entry_id=f"pay_{line}"
        )
    statement.status, statement.finished_at = RunStatus.COMPLETED, timezone.now()
    statement.save()
    settlement.explain(statement.results.filter(line=6), actor=approver, reason="the provider's typo")
    now = timezone.now()
    alerts = {
        name: Alert.objects.create(
            rule=AlertRule.objects.get(name=name), summary=summary, state=state, started_at=now, opened_at=now
        )
        for name, summary, state in [
            (RuleName.DRIFT_ABOVE, "run drifts by 1,500", AlertState.OPEN),
            (RuleName.JOB_FAILED, "run 9 failed", AlertState.OPEN),
            (RuleName.MIGRATION_STALLED, "migration 4 stalled", AlertState.ACKNOWLEDGED),
        ]
    }
    return {"run": run, "break": brk, "alice": by_alice, "dora": by_dora, "statement": statement, **alerts}


def page_of(client, user, url=INBOX):
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    page = response.content.decode()
    assert csp_refusals(page) == []
    return page


def keys(user) -> dict[str, list[str]]:
    return {section.kind.value: [item.key for item in section.items] for section in inbox.sections(user)}


def test_an_approver_sees_others_requests_settlement_rows_to_explain_and_nothing_of_anyone_else(
    client, approver, world
):
    assert keys(approver) == {
        "balance_request": [str(world["alice"].pk), str(world["dora"].pk)],
        "cutover_acceptance": [],
        # every break without a follow-up (the explained one and the matched one are not)
        "settlement_rows": [
            f"{world['statement'].pk}:{o}" for o in ("missing_in_ledger", "points_mismatch", "unreversed")
        ],
        "break": [],
        "alert": [],
        "backfill_plan": [],
    }
    page = page_of(client, approver)
    assert "Balance requests to decide: 2" in page
    decide = reverse("admin:reconciliation_balancerequest_decide", args=[world["alice"].pk])
    assert f'href="{decide}">Decide</a>' in page
    assert "wallet w2: +10 points" in page and "Proposed by alice: late flight" in page
    assert "Settlement run" in page and "2 row(s) missing in the ledger" in page
    assert "run drifts" not in page and "run 9 failed" not in page


def test_nobody_sees_their_own_proposal(client, maker_checker, world):
    assert keys(maker_checker)["balance_request"] == [str(world["alice"].pk)]
    page = page_of(client, maker_checker)
    assert "wallet w2" in page and "wallet w3" not in page


def test_a_reviewer_sees_the_breaks_they_hold_and_finance_alerts_and_no_request_to_decide(
    client, reviewer, world
):
    assert keys(reviewer) == {
        "balance_request": [],
        "cutover_acceptance": [],
        "settlement_rows": [f"{world['statement'].pk}:points_mismatch"],  # an adjustment is theirs to propose
        "break": [str(world["break"].pk)],
        "alert": [str(world["drift_above"].pk)],
        "backfill_plan": [],
    }
    page = page_of(client, reviewer)
    assert f'href="/admin/reconciliation/break/{world["break"].pk}/change/">Work on it</a>' in page
    assert "Drift above a threshold: run drifts by 1,500" in page
    assert "Decide" not in page


def test_ops_see_what_they_replay_or_reverse_and_operational_alerts_not_acknowledged_ones(client, ops, world):
    assert keys(ops) == {
        "balance_request": [],
        "cutover_acceptance": [],
        # the missing row without a delivery is not theirs: nothing to replay
        "settlement_rows": [f"{world['statement'].pk}:{o}" for o in ("missing_in_ledger", "unreversed")],
        "break": [],
        "alert": [str(world["job_failed"].pk)],
        "backfill_plan": [],
    }
    page = page_of(client, ops)
    assert "1 row(s) missing in the ledger" in page and "Look and acknowledge" in page
    assert "migration 4 stalled" not in page


def test_a_staff_account_in_no_role_has_no_inbox_count_or_tile(client, outsider, world):
    assert inbox.sections(outsider) == [] and inbox.count(outsider) == 0
    client.force_login(outsider)
    assert client.get(INBOX).status_code == 403
    index = client.get(reverse("admin:index")).content.decode()
    assert 'id="inbox-link"' not in index and 'id="inbox-tile"' not in index


def test_what_was_acted_on_leaves_the_inbox(client, reviewer, approver, ops, world, gateway):
    changes.reject(world["alice"].pk, actor=approver, reason="not a goodwill case")
    settlement.explain(world["statement"].results.filter(line=2), actor=approver, reason="refund voided")
    Alert.objects.filter(pk=world["job_failed"].pk).update(state=AlertState.SILENCED)
    assert keys(approver)["balance_request"] == [str(world["dora"].pk)]
    assert f"{world['statement'].pk}:unreversed" not in keys(approver)["settlement_rows"]
    assert keys(ops)["alert"] == [] and keys(ops)["settlement_rows"] == [
        f"{world['statement'].pk}:missing_in_ledger"
    ]


def test_the_same_statement_matched_again_stands_for_the_earlier_run(approver, world):
    assert world["statement"].file_sha256 == "a" * 64  # the same file as below
    later = SettlementRun.objects.create(
        status=RunStatus.RUNNING, trigger="command", source="s.csv", file_sha256="a" * 64
    )
    SettlementRow.objects.create(run=later, line=1, outcome=Outcome.POINTS_MISMATCH, entry_id="pay_1")
    later.status, later.finished_at = RunStatus.COMPLETED, timezone.now()
    later.save()
    assert keys(approver)["settlement_rows"] == [f"{later.pk}:points_mismatch"]


def test_who_cannot_decide_has_nothing_awaiting_their_decision(reviewer, ops, approver, world):
    # Before, `awaiting` left the role to its callers: the wallet page offered a
    # reviewer "Decide request #N" links for everyone else's proposals.
    assert list(change_queries.awaiting(reviewer)) == [] and list(change_queries.awaiting(ops)) == []
    assert set(change_queries.awaiting(approver)) == {world["alice"], world["dora"]}


def test_the_dashboard_and_the_header_count_what_waits_for_this_user(client, reviewer, approver, ops, world):
    # Before, the dashboard said "Waiting for a decision: 2" to everyone, deciders or not.
    index = page_of(client, reviewer, reverse("admin:index"))
    assert "Waiting for a decision" not in index
    assert 'Waiting for you: <span id="inbox-count" class="inbox-count">3</span>' in index
    assert f'href="{INBOX}">Waiting for you: 3</a>' in index
    assert f'href="{INBOX}#inbox-break">Breaks assigned to you</a>: 1' in index

    index = page_of(client, approver, reverse("admin:index"))
    assert f'href="{INBOX}">Waiting for you: 5</a>' in index
    assert f'href="{INBOX}#inbox-balance-request">Balance requests to decide</a>: 2' in index

    # The header says it on every admin page, not only the index.
    other = page_of(client, approver, reverse("admin:reconciliation_balancerequest_changelist"))
    assert 'id="inbox-count" class="inbox-count">5</span>' in other
    changes.reject(world["dora"].pk, actor=approver, reason="wrong wallet")
    other = page_of(client, approver, reverse("admin:reconciliation_break_changelist"))
    assert 'id="inbox-count" class="inbox-count">4</span>' in other

    assert 'id="inbox-count" class="inbox-count">3</span>' in page_of(client, ops, reverse("admin:index"))


def test_every_alert_rule_belongs_to_an_area():
    assert set(inbox.AREAS) == set(RuleName)


# -- the email ----------------------------------------------------------------------------


def test_a_proposal_emails_each_approver_who_may_decide_it_once(
    smtp, gateway, reviewer, approver, ops, maker_checker, django_capture_on_commit_callbacks, settings
):
    settings.SITE_URL = "https://backoffice.example.com"
    put_wallets(gateway, {"w2": (50, [50])})
    with django_capture_on_commit_callbacks(execute=True):
        request = changes.propose_adjustment(
            actor=maker_checker,
            uid="w2",
            amount=10,
            reason_code="goodwill",
            reason="late flight",
            gateway=gateway,
        )
    # bob may decide it; dora proposed it; alice and olga cannot decide.
    assert [message["to"] for message in smtp.messages] == [["bob@example.com"]]
    content = smtp.messages[0]["content"]
    assert "Subject: [revassure] Waiting for you: Manual adjustment #" in content
    assert (
        f"Decide: https://backoffice.example.com/admin/reconciliation/balancerequest/{request.pk}/decide/"
        in content
    )
    assert "From: revassure-alerts@example.com" in content  # ALERT_FROM_EMAIL

    # The same announcement again (a retried task) tells nobody twice.
    assert inbox.notify(WaitingKind.BALANCE_REQUEST, request.pk) == 0
    assert len(smtp.messages) == 1
    assert InboxNotice.objects.get().sent


def test_a_waiting_notice_whose_task_was_lost_with_a_machine_is_sent_by_the_sweep_once(
    smtp, gateway, reviewer, approver, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"w2": (50, [50])})
    # The proposal commits; its notice's task went to a machine that died (never run).
    with django_capture_on_commit_callbacks(execute=False):
        request = changes.propose_adjustment(
            actor=reviewer, uid="w2", amount=10, reason_code="goodwill", reason="late flight", gateway=gateway
        )
    announcement = WaitingAnnouncement.objects.get()
    assert (announcement.kind, announcement.object_id, announcement.state) == (
        "balance_request",
        request.pk,
        "pending",
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.sweep()["waiting_announcements"] == 0  # queued just now: its task may come
    assert smtp.messages == []

    WaitingAnnouncement.objects.update(queued_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.sweep()["waiting_announcements"] == 1

    assert [message["to"] for message in smtp.messages] == [["bob@example.com"]]
    announcement.refresh_from_db()
    assert (announcement.state, announcement.attempts) == ("sent", 1)
    # The lost task arrives after all, and the sweep runs again: bob is told once.
    assert tasks.notify_waiting(announcement.pk, 1) == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.sweep()["waiting_announcements"] == 0
    assert len(smtp.messages) == 1


def test_a_waiting_notice_whose_worker_died_before_sending_it_is_sent_by_the_next_attempt(
    smtp, gateway, reviewer, approver, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"w2": (50, [50])})
    with django_capture_on_commit_callbacks(execute=False):
        request = changes.propose_adjustment(
            actor=reviewer, uid="w2", amount=10, reason_code="goodwill", reason="late flight", gateway=gateway
        )
    announcement = WaitingAnnouncement.objects.get()
    # Its worker took it, claimed bob's notice, and died before the mail left.
    assert outbox.claim(WaitingAnnouncement, announcement.pk, 1)
    InboxNotice.objects.create(
        kind="balance_request", object_id=request.pk, recipient=approver, announcement=announcement
    )
    WaitingAnnouncement.objects.update(lease_until=timezone.now() - timedelta(hours=1))

    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.sweep()["waiting_announcements"] == 1

    assert [message["to"] for message in smtp.messages] == [["bob@example.com"]]
    assert InboxNotice.objects.get().sent
    assert WaitingAnnouncement.objects.values_list("state", "attempts").get() == ("sent", 2)


def test_a_cutover_waiting_for_acceptance_emails_the_approvers(
    smtp, gateway, ops, approver, reviewer, django_capture_on_commit_callbacks
):
    put_wallets(gateway, {"u1": (12, [10]), "u2": (5, [2, 3])})
    run = cutover.start(actor=ops, name="go-live", target="production")
    for key in ("freeze", "snapshot"):
        cutover.confirm(run, key, actor=ops, gateway=gateway, trigger=RunTrigger.ADMIN)
    assert smtp.messages == []
    with django_capture_on_commit_callbacks(execute=True):
        step = cutover.confirm(run, "reconcile", actor=ops, gateway=gateway, trigger=RunTrigger.ADMIN)
    assert step.state == StepState.NEEDS_ACCEPTANCE
    assert [message["to"] for message in smtp.messages] == [["bob@example.com"]]
    assert "go-live to production: step 3" in smtp.messages[0]["content"]
    assert keys(approver)["cutover_acceptance"] == [str(step.pk)]
    assert keys(ops)["cutover_acceptance"] == [] and keys(reviewer)["cutover_acceptance"] == []

    cutover.confirm(
        run, "reconcile", actor=approver, gateway=gateway, trigger=RunTrigger.ADMIN, accept="known"
    )
    assert keys(approver)["cutover_acceptance"] == []


def test_a_mail_server_that_refuses_never_fails_the_proposal(
    settings, gateway, reviewer, approver, django_capture_on_commit_callbacks
):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    put_wallets(gateway, {"w2": (50, [50])})
    with django_capture_on_commit_callbacks(execute=True):
        request = changes.propose_adjustment(
            actor=reviewer, uid="w2", amount=10, reason_code="goodwill", reason="late flight", gateway=gateway
        )
    request.refresh_from_db()
    assert request.state == "proposed"
    notice = InboxNotice.objects.get()
    assert (notice.recipient, notice.sent) == (approver, False) and "Connection refused" in notice.error


def test_an_assigned_break_emails_its_new_owner(
    smtp, gateway, reviewer, django_capture_on_commit_callbacks, db
):
    colleague = User.objects.create_user("erin", "erin@example.com", "password", is_staff=True)
    colleague.groups.add(Group.objects.get(name=REVIEWER))
    put_wallets(gateway, {"w1": (130, [100, 20])})
    services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)
    brk = Break.objects.get(uid="w1")
    with django_capture_on_commit_callbacks(execute=True):
        break_actions.assign([brk.pk], owner=colleague, actor=reviewer)
    assert [message["to"] for message in smtp.messages] == [["erin@example.com"]]
    assert "Subject: [revassure] Waiting for you: Break #" in smtp.messages[0]["content"]
    [breaks] = [section for section in inbox.sections(colleague) if section.kind == WaitingKind.BREAK]
    assert timezone.now() - breaks.items[0].since < timedelta(minutes=1)


def test_a_plan_that_needs_a_second_person_waits_for_the_others_who_approve_plans_and_emails_them(
    smtp, gateway, ops, approver, reviewer, tmp_path, django_capture_on_commit_callbacks, client
):
    put_wallets(gateway, {"u1": (0, [])})
    export = tmp_path / "export.jsonl"
    export.write_text(event_line("evt_1", points=70) + "\n")
    planned = run_requests.start_replay(path=str(export), dry_run=True, actor=ops)
    with django_capture_on_commit_callbacks(execute=True), export.open() as lines:
        file_replay.run_replay(planned, lines, gateway=gateway)

    assert keys(approver)["backfill_plan"] == [str(planned.pk)]
    assert keys(ops)["backfill_plan"] == []  # who planned it cannot approve it
    assert keys(reviewer)["backfill_plan"] == []  # nor who does not approve plans
    page = page_of(client, approver)
    assert f"Dry run #{planned.pk}: replay of an export moving 70 points, planned by olga" in page
    assert f'href="/admin/backfill/datamigration/{planned.pk}/change/">Read and approve</a>' in page
    assert [message["to"] for message in smtp.messages] == [["bob@example.com"]]
    assert f"Subject: [revassure] Waiting for you: Dry run #{planned.pk}" in smtp.messages[0]["content"]

    plan_approval.approve_plan(planned.pk, actor=approver, reason="one payment, as asked")
    assert keys(approver)["backfill_plan"] == []
