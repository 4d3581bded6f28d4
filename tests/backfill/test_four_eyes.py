"""Four eyes on every path to a real backfill run (issue 25): a real run not
bound to a plan whose events name more than BACKFILL_PLAN_APPROVAL_ABOVE points
is refused before anything is queued, saying how to get a plan approved, from
the upload form, the two commands, the admin's stored replay, the completeness
page and the job API; a stored replay is planned, approved by a second person
and run bound to its plan like a file. (The plan's approval itself:
test_plan_approval.py.)"""

import json
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from backfill import plan_approval
from backfill.models import DataMigration, EventStatus, ProviderEventDelivery
from backfill.services import apply_delivery
from tests.helpers import EXPORT, firestore_client, put_wallets
from tests.helpers import stored_event as stored

# What EXPORT's events name, each in absolute value (its line that is not JSON names none).
EXPORT_NAMES = 30 + 100 + 100 + 100 + 50 + 80 + 100
REFUSED = (
    f"its events name {EXPORT_NAMES} points, above BACKFILL_PLAN_APPROVAL_ABOVE (0), so a real run goes "
    "through a plan a second person approves: start a dry run, have a second person approve its plan on "
    "the dry run's page, then run it for real bound to that plan"
)


def points_of(gateway, uid):
    return firestore_client(gateway.project).collection("wallets").document(uid).get().to_dict()["points"]


@pytest.fixture
def export(tmp_path, gateway):
    put_wallets(gateway, {"u1": (0, []), "u2": (10, [10])})
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(EXPORT) + "\n")
    return path


def command(name, path, *options):
    out = StringIO()
    call_command(name, str(path), "--json", *options, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_the_upload_form_refuses_a_real_run_above_the_threshold_and_says_to_tick_dry_run(
    client, ops, export, settings
):
    client.force_login(ops)
    upload = SimpleUploadedFile("export.jsonl", export.read_bytes())

    page = client.post(reverse("admin:backfill_upload"), {"export": upload}).content.decode()

    assert f"Refused: {REFUSED}".replace("'", "&#x27;") in page
    assert "upload it with &quot;Dry run&quot; ticked" in page
    assert not DataMigration.objects.exists()

    settings.BACKFILL_PLAN_APPROVAL_ABOVE = EXPORT_NAMES  # small enough for one person
    upload = SimpleUploadedFile("export.jsonl", export.read_bytes())
    assert client.post(reverse("admin:backfill_upload"), {"export": upload}).status_code == 302
    assert DataMigration.objects.get().dry_run is False


@pytest.mark.django_db
def test_replay_webhooks_without_dry_run_or_plan_is_refused_and_names_the_commands(export, gateway):
    with pytest.raises(CommandError) as refused:
        command("replay_webhooks", export)

    assert str(refused.value) == (
        f"refused, nothing written: {REFUSED} (replay_webhooks {export} --dry-run, then "
        f"replay_webhooks {export} --plan <its id>)"
    )
    assert not DataMigration.objects.exists() and points_of(gateway, "u1") == 0


@pytest.mark.django_db
def test_backfill_reversals_runs_for_real_only_bound_to_an_approved_plan(tmp_path, gateway, approver):
    put_wallets(gateway, {"u1": (0, [])})
    apply_delivery(stored("evt_p", payment="pay_1", points=100).pk, gateway=gateway)  # the payment, credited
    path = tmp_path / "reversals.csv"
    path.write_text(
        "payment_id,refund_id,chargeback_id,user_id,points,created\npay_1,re_1,,u1,30,2026-11-21T10:00:00Z\n"
    )
    with pytest.raises(CommandError, match=r"its events name 30 points, .* --plan <its id>\)$"):
        command("backfill_reversals", path)

    planned = command("backfill_reversals", path, "--dry-run")
    with pytest.raises(CommandError, match="a second person, not who planned it, approves plan"):
        command("backfill_reversals", path, "--plan", str(planned["migration_id"]))
    plan_approval.approve_plan(planned["migration_id"], actor=approver, reason="one refund, as finance says")
    done = command("backfill_reversals", path, "--plan", str(planned["migration_id"]))

    assert (done["applied"], done["dry_run"]) == (1, False)
    assert points_of(gateway, "u1") == 70
    run = DataMigration.objects.get(pk=done["migration_id"])
    assert run.parameters["plan"] == planned["migration_id"]


@pytest.fixture
def backlog(gateway):
    """Deliveries stored but never applied (the webhook workers were down): 120 + 40 points named."""
    put_wallets(gateway, {"u1": (0, [])})
    return [stored("evt_1", points=120), stored("evt_r", "payment.refunded", points=40, refund_id="re_1")]


def post_job(client, token, body):
    return client.post(
        reverse("job-backfill"),
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token()}",
    )


@pytest.mark.django_db
def test_the_job_api_plans_a_stored_replay_and_runs_it_bound_to_the_plan_a_second_person_approved(
    client, gateway, backlog, token, job_settings, approver, django_capture_on_commit_callbacks
):
    refused = post_job(client, token, {})
    assert refused.status_code == 409
    assert refused.json()["error"] == (
        "backfill refused: its events name 160 points, above BACKFILL_PLAN_APPROVAL_ABOVE (0), so a real "
        "run goes through a plan a second person approves: start a dry run, have a second person approve "
        "its plan on the dry run's page, then run it for real bound to that plan (POST "
        '{"dry_run": true}, have a second person approve its plan in the admin, then POST {"plan": <its id>})'
    )
    assert not DataMigration.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        planned = post_job(client, token, {"dry_run": True})
    plan = DataMigration.objects.get(pk=planned.json()["migration_id"])
    assert (plan.dry_run, plan.status, plan.applied) == (True, "completed", 2)
    assert plan.plan["wallets"]["u1"] == {
        "points_before": 0,
        "points_after": 80,
        "entries": {"purchase-pay_1": 120, "refund-re_1": -40},
    }
    assert points_of(gateway, "u1") == 0  # a plan writes nothing
    assert post_job(client, token, {"plan": plan.pk}).status_code == 409  # not approved yet
    assert post_job(client, token, {"plan": plan.pk + 100}).status_code == 404
    assert post_job(client, token, {"plan": plan.pk, "dry_run": True}).status_code == 400

    plan_approval.approve_plan(plan.pk, actor=approver, reason="the two events of the outage")
    with django_capture_on_commit_callbacks(execute=True):
        bound = post_job(client, token, {"plan": plan.pk})

    assert bound.status_code == 202
    run = DataMigration.objects.get(pk=bound.json()["migration_id"])
    assert (run.dry_run, run.status, run.applied, run.parameters["plan"]) == (False, "completed", 2, plan.pk)
    assert points_of(gateway, "u1") == 80
    assert set(ProviderEventDelivery.objects.values_list("status", flat=True)) == {EventStatus.APPLIED}


@pytest.mark.django_db
def test_a_stored_replay_bound_to_a_plan_refuses_a_delivery_stored_since(
    gateway, backlog, ops, approver, django_capture_on_commit_callbacks, client
):
    """The plan names the deliveries there when it was made: one stored since is
    the webhook drain's, not the run's, and the run applies what was approved."""
    client.force_login(ops)
    url = reverse("admin:backfill_rerun_stored")
    assert "2 stored event(s) are not applied" in client.get(url).content.decode()
    refused = client.post(url, {}).content.decode()  # "Dry run" unticked
    assert "Refused: its events name 160 points" in refused
    assert "&quot;Re-run stored events&quot; with &quot;Dry run&quot; ticked" in refused  # the how
    assert not DataMigration.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"dry_run": "on"})
    plan = DataMigration.objects.get()
    plan_approval.approve_plan(plan.pk, actor=approver, reason="checked")
    later = stored("evt_later", payment="pay_9", points=7)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:backfill_run_bound", args=[plan.pk]))

    run = DataMigration.objects.filter(dry_run=False).get()
    assert (run.status, run.applied) == ("completed", 2)
    assert points_of(gateway, "u1") == 80
    assert ProviderEventDelivery.objects.get(pk=later.pk).status == EventStatus.RECEIVED


@pytest.mark.django_db
def test_the_completeness_page_plans_the_gaps_replay_when_it_needs_a_second_person(
    client, gateway, backlog, ops, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(reverse("admin:backfill_completeness"), follow=True).content.decode()

    plan = DataMigration.objects.get()
    assert plan.dry_run and plan.status == "completed"
    assert f"dry run {plan.pk} plans their replay, writing nothing, for a second person to approve" in page
    assert points_of(gateway, "u1") == 0
