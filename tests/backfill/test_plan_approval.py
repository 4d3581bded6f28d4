"""Four eyes on backfill plans: who may approve a dry run's plan, and a real run
bound to it refused until a second person has (issue 25)."""

import pytest
from django.urls import reverse

from backfill import file_replay, plan_approval, run_requests
from backfill.models import DataMigration
from tests.helpers import EXPORT, put_wallets


@pytest.fixture
def plan(gateway, ops, tmp_path):
    """A completed dry run of the shared export (u1 +70, u2 +50), planned by ops (olga); the
    admin's and the command's paths to a real run are in test_admin and test_replay_command."""
    put_wallets(gateway, {"u1": (0, []), "u2": (0, [])})
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join(EXPORT) + "\n")
    planned = run_requests.start_replay(path=str(export), dry_run=True, actor=ops)
    with export.open() as lines:
        return file_replay.run_replay(planned, lines, gateway=gateway)


@pytest.mark.django_db
def test_who_planned_it_cannot_approve_it_and_a_second_person_with_the_role_can(
    plan, ops, approver, reviewer, django_user_model
):
    assert plan_approval.moved_points(plan) == 120
    with pytest.raises(plan_approval.PlanRefused, match="you planned it: a second person approves it"):
        plan_approval.approve_plan(plan.pk, actor=ops, reason="fine")
    with pytest.raises(plan_approval.PlanRefused, match="only ops and finance approvers approve plans"):
        plan_approval.approve_plan(plan.pk, actor=reviewer, reason="fine")
    with pytest.raises(plan_approval.PlanRefused, match="a reason is required"):
        plan_approval.approve_plan(plan.pk, actor=approver, reason="  ")
    assert plan_approval.run_refusal(plan).startswith("its plan moves 120 points")

    # Another ops person is a second person too.
    colleague = django_user_model.objects.create_user("otis", is_staff=True)
    colleague.groups.set(ops.groups.all())
    approved = plan_approval.approve_plan(plan.pk, actor=colleague, reason="u1 and u2, as asked")

    assert (approved.plan_approved_by, approved.plan_approval_reason) == (colleague, "u1 and u2, as asked")
    assert plan_approval.run_refusal(approved) == ""
    with pytest.raises(plan_approval.PlanRefused, match="otis approved it already"):
        plan_approval.approve_plan(plan.pk, actor=approver, reason="me too")


@pytest.mark.django_db
def test_a_real_run_is_not_a_plan_to_approve(gateway, ops, approver, tmp_path):
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join(EXPORT) + "\n")
    real = run_requests.start_replay(path=str(export), dry_run=False, actor=ops)
    with pytest.raises(plan_approval.PlanRefused, match="only a completed dry run's plan is approved"):
        plan_approval.approve_plan(real.pk, actor=approver, reason="fine")


@pytest.mark.django_db
def test_below_the_threshold_one_person_suffices(plan, ops, settings):
    settings.BACKFILL_PLAN_APPROVAL_ABOVE = 120
    assert not plan_approval.needs_approval(plan)
    assert plan_approval.run_refusal(plan) == ""
    assert plan_approval.approval_text(plan) == (
        "No second person needed: it moves 120 points, at most BACKFILL_PLAN_APPROVAL_ABOVE (120)."
    )


@pytest.mark.django_db
@pytest.mark.parametrize("role, status", [("reviewer", 403), ("outsider", 403), ("approver", 302)])
def test_the_approve_url_takes_a_post_from_those_who_approve_plans(client, plan, request, role, status):
    client.force_login(request.getfixturevalue(role))
    url = reverse("admin:backfill_approve_plan", args=[plan.pk])

    assert client.get(url).status_code == 405  # nothing changes on a GET
    assert client.post(url, {"reason": "checked"}).status_code == status
    assert (DataMigration.objects.get(pk=plan.pk).plan_approved_by is not None) == (status == 302)
