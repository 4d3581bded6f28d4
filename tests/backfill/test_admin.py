from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from backfill import completeness, file_replay, plan_approval, progress, run_requests, runs
from backfill.models import DataMigration, MigrationStatus, ProviderEventDelivery
from revassure.formatting import when
from tests.helpers import EXPORT, csp_refusals, event_line, firestore_client, put_wallets
from tests.helpers import stored_event as stored


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_every_backfill_admin_page_renders(client, gateway, django_capture_on_commit_callbacks):
    delivery = stored("evt_1")
    with django_capture_on_commit_callbacks():
        migration = run_requests.request_stored_replay()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    for url in [
        reverse("admin:backfill_datamigration_changelist"),
        reverse("admin:backfill_datamigration_change", args=[migration.pk]),
        reverse("admin:backfill_providereventdelivery_changelist"),
        reverse("admin:backfill_providereventdelivery_changelist") + "?status__exact=received",
        reverse("admin:backfill_providereventdelivery_change", args=[delivery.pk]),
        reverse("admin:backfill_completeness"),
        reverse("admin:backfill_upload"),
    ]:
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_ops_pause_a_migration_from_the_admin_and_reviewers_cannot(
    client, gateway, ops, reviewer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        migration = run_requests.request_stored_replay()
    url = reverse("admin:backfill_datamigration_changelist")
    data = {"action": "pause", "_selected_action": [migration.pk]}

    client.force_login(reviewer)
    client.post(url, data)
    migration.refresh_from_db()
    assert migration.status == MigrationStatus.PENDING

    client.force_login(ops)
    response = client.post(url, data, follow=True)
    migration.refresh_from_db()
    assert migration.status == MigrationStatus.PAUSED
    assert f"Migration {migration.pk}: pause done." in response.content.decode()


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_ops_upload_an_export_and_a_worker_replays_it(
    client, gateway, ops, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    put_wallets(gateway, {"u1": (0, []), "u2": (10, [10])})
    client.force_login(ops)
    export = SimpleUploadedFile("export.jsonl", ("\n".join(EXPORT) + "\n").encode())

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("admin:backfill_upload"), {"export": export}, follow=True)

    migration = DataMigration.objects.get()
    assert f"Replay {migration.pk} queued" in response.content.decode()
    assert (migration.status, migration.total, migration.applied, migration.dry_run) == (
        "completed",
        8,
        3,
        False,
    )
    assert (
        firestore_client(gateway.project).collection("wallets").document("u1").get().to_dict()["points"] == 70
    )


@pytest.mark.django_db
def test_only_ops_upload_exports(client, reviewer):
    client.force_login(reviewer)
    assert client.get(reverse("admin:backfill_upload")).status_code == 403


# -- the look of the backfill pages (issue 15) ------------------------------------

CHANGELIST = "admin:backfill_datamigration_changelist"
CSV_HEADER = "payment_id,refund_id,chargeback_id,user_id,points,created"


def page_of(migration):
    return reverse("admin:backfill_datamigration_change", args=[migration.pk])


def export_file(lines, name="export.jsonl"):
    return SimpleUploadedFile(name, ("\n".join(lines) + "\n").encode())


def upload(client, lines, *, dry_run=True, view="admin:backfill_upload", name="export.jsonl", capture):
    data = {"export": export_file(lines, name)}
    if dry_run:
        data["dry_run"] = "on"
    with capture(execute=True):  # the worker's task runs when the request's transaction commits
        response = client.post(reverse(view), data)
    return client.get(response["Location"]) if response.status_code == 302 else response


@pytest.fixture
def uploads(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def wallets(gateway):
    put_wallets(gateway, {"u1": (0, []), "u2": (10, [10])})
    return gateway


def points_of(gateway, uid):
    return firestore_client(gateway.project).collection("wallets").document(uid).get().to_dict()["points"]


@pytest.mark.django_db
def test_a_dry_run_shows_every_line_with_its_outcome_and_reason(
    client, wallets, ops, uploads, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    response = upload(client, EXPORT, capture=django_capture_on_commit_callbacks)

    plan = DataMigration.objects.get()
    html = response.content.decode()
    assert response.request["PATH_INFO"] == page_of(plan)
    assert f"Dry run {plan.pk} queued" in html
    assert "The plan, line by line" in html
    assert "Would apply" in html and "Would be quarantined" in html
    assert "purchase-pay_1 is already credited to wallet u1; not credited to ghost as well" in html
    assert "not JSON: Expecting property name enclosed in double quotes" in html
    assert "reversal of 80 exceeds the 50 points left of purchase-pay_2" in html
    assert "purchase-pay_1 is already in the ledger" in html
    # The refund that came before its payment: planned after it, as the run will apply it.
    refund = plan.plan_items.get(line=1)
    assert (refund.event_id, refund.outcome, refund.amount) == ("evt_r1", "applied", -30)
    assert [item.line for item in plan.plan_items.all()] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert points_of(wallets, "u1") == 0  # nothing written


@pytest.mark.django_db
def test_a_dry_runs_plan_is_never_a_delivery_to_apply_or_count(
    client, wallets, ops, uploads, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    upload(client, EXPORT, capture=django_capture_on_commit_callbacks)

    assert ProviderEventDelivery.objects.count() == 0
    assert completeness.check(wallets) == completeness.Completeness([], [])
    with django_capture_on_commit_callbacks(execute=True):
        replay = run_requests.request_stored_replay(include_quarantined=True)
    replay.refresh_from_db()
    assert (replay.status, replay.total) == ("completed", 0)
    assert points_of(wallets, "u1") == 0


@pytest.mark.django_db
def test_a_dry_run_reads_would_apply_not_applied(
    client, wallets, ops, uploads, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    upload(client, EXPORT, capture=django_capture_on_commit_callbacks)

    listing = client.get(reverse(CHANGELIST)).content.decode()
    assert '<td data-label="Applied" class="field-applied_count">Would apply 3</td>' in listing
    assert '<td data-label="Mode" class="field-mode">Dry run</td>' in listing
    assert "icon-no.svg" not in listing and "icon-yes.svg" not in listing  # no red ✖ for a mode
    plan = DataMigration.objects.get()
    html = client.get(page_of(plan)).content.decode()
    assert '<th>Would apply</th><td class="numeric">3</td>' in html
    assert "Applied" not in html.split('id="migration-outcomes"')[1].split("</table>")[0]


@pytest.mark.django_db
def test_the_plan_is_paged_and_filtered_by_outcome(
    client, wallets, ops, uploads, django_capture_on_commit_callbacks
):
    lines = [event_line(f"evt_{n}", payment=f"pay_{n}", points=n + 1) for n in range(110)] + ["{oops"]
    client.force_login(ops)
    upload(client, lines, capture=django_capture_on_commit_callbacks)
    plan = DataMigration.objects.get()

    first = client.get(page_of(plan)).content.decode()
    assert first.count('class="ra-item ') == 50
    assert "page 1 of 3 · rows 1–50 of 111" in first
    last = client.get(page_of(plan), {"items_page": 3}).content.decode()
    assert last.count('class="ra-item ') == 11 and "{oops" not in last  # the line itself is not echoed
    assert "not JSON" in last
    quarantined = client.get(page_of(plan), {"outcome": "quarantined"}).content.decode()
    assert quarantined.count('class="ra-item ') == 1
    assert ">Would be quarantined (1)</a>" in quarantined and ">Would apply (110)</a>" in quarantined


@pytest.mark.django_db
def test_ops_run_a_dry_run_for_real_bound_to_its_plan_once_a_second_person_approved_it(
    client, wallets, ops, approver, uploads, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    upload(client, EXPORT, capture=django_capture_on_commit_callbacks)
    plan = DataMigration.objects.get()
    # Four eyes: who planned it neither approves it nor runs it before someone else approves it.
    html = client.get(page_of(plan)).content.decode()
    assert "Not approved yet: it moves 120 points, so a second person approves it." in html
    assert "You cannot approve it: you planned it: a second person approves it." in html
    assert 'id="approve-plan-form"' not in html and 'id="run-for-real"' not in html
    assert "a second person, not who planned it, approves plan" in html
    own = client.post(reverse("admin:backfill_approve_plan", args=[plan.pk]), {"reason": "mine"}, follow=True)
    assert "Refused: you planned it: a second person approves it." in own.content.decode()
    refused = client.post(reverse("admin:backfill_run_bound", args=[plan.pk]), follow=True)
    assert "a second person, not who planned it, approves plan" in refused.content.decode()
    assert DataMigration.objects.count() == 1

    client.force_login(approver)
    html = client.get(page_of(plan)).content.decode()
    assert 'id="approve-plan-form"' in html
    no_reason = client.post(
        reverse("admin:backfill_approve_plan", args=[plan.pk]), {"reason": ""}, follow=True
    )
    assert "Refused: a reason is required to approve a plan." in no_reason.content.decode()
    approved = client.post(
        reverse("admin:backfill_approve_plan", args=[plan.pk]),
        {"reason": "70 points to u1 and 50 to u2, as asked"},
        follow=True,
    )
    assert f"Plan {plan.pk} approved: it may now be run for real, bound to it." in approved.content.decode()
    assert (
        "Approved by bob at " in approved.content.decode()
        and "70 points to u1 and 50 to u2, as asked" in approved.content.decode()
    )

    client.force_login(ops)
    html = client.get(page_of(plan)).content.decode()
    assert '<button type="submit" id="run-for-real"' in html
    assert "Run for real, bound to this plan</button>" in html

    with django_capture_on_commit_callbacks(execute=True):
        pressed = client.post(reverse("admin:backfill_run_bound", args=[plan.pk]))
    response = client.get(pressed["Location"])

    real = DataMigration.objects.filter(dry_run=False).get()
    check = DataMigration.objects.get(pk=real.parameters["plan_check"])
    assert pressed["Location"] == page_of(real)
    assert f"Run {real.pk} queued, bound to plan {plan.pk}" in response.content.decode()
    assert (real.status, real.source, real.parameters["plan"], real.error) == (
        "completed",
        "upload",
        plan.pk,
        "",
    )
    assert real.outcomes() == plan.outcomes() == plan.plan["outcomes"]
    assert check.dry_run and check.plan_checksum == plan.plan_checksum
    assert points_of(wallets, "u1") == 70
    html = client.get(page_of(real)).content.decode()
    assert "Outcomes, line by line" in html and "checked unchanged by dry run <a" in html
    assert f"Plan {plan.pk}: Approved by bob at " in html  # the run's record names who approved its plan
    # The plan's page now names its run and offers no second one.
    html = client.get(page_of(plan)).content.decode()
    assert f"run #{real.pk}</a> (completed)" in html and 'id="run-for-real"' not in html
    assert f"run {real.pk} is bound to it already (completed)" in html


@pytest.mark.django_db
def test_a_run_bound_to_a_plan_is_refused_with_the_reason_when_the_world_changed(
    client, wallets, ops, approver, uploads, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    upload(client, EXPORT, capture=django_capture_on_commit_callbacks)
    plan = DataMigration.objects.get()
    plan_approval.approve_plan(plan.pk, actor=approver, reason="as asked")
    firestore_client(wallets.project).collection("wallets").document("u2").update(
        {"points": 500}
    )  # someone moved u2

    with django_capture_on_commit_callbacks(execute=True):
        pressed = client.post(reverse("admin:backfill_run_bound", args=[plan.pk]))
    response = client.get(pressed["Location"])

    real = DataMigration.objects.filter(dry_run=False).get()
    assert real.status == "failed"
    assert real.error.startswith(f"refused, nothing written: the run would differ from plan {plan.pk}")
    assert ProviderEventDelivery.objects.count() == 0
    assert points_of(wallets, "u1") == 0
    assert "refused, nothing written: the run would differ from plan" in response.content.decode()


@pytest.mark.django_db
def test_a_bound_run_whose_file_went_away_is_refused_not_left_running(
    client, wallets, ops, approver, uploads, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    upload(client, EXPORT, capture=django_capture_on_commit_callbacks)
    plan = DataMigration.objects.get()
    plan_approval.approve_plan(plan.pk, actor=approver, reason="as asked")
    with django_capture_on_commit_callbacks() as queued:
        client.post(reverse("admin:backfill_run_bound", args=[plan.pk]))
    for kept in uploads.rglob("*.jsonl"):
        kept.unlink()  # cleaned up between the click and the worker
    for task in queued:
        task()

    real = DataMigration.objects.get(dry_run=False)
    assert (real.status, real.error) == (
        "failed",
        "refused, nothing written: its uploaded file is no longer kept",
    )
    assert (
        "its uploaded file is no longer kept: upload it again" in client.get(page_of(plan)).content.decode()
    )


@pytest.mark.django_db
def test_only_ops_run_plans_for_real(
    client, wallets, ops, reviewer, approver, uploads, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    upload(client, EXPORT, capture=django_capture_on_commit_callbacks)
    plan = DataMigration.objects.get()
    for person in (reviewer, approver):
        client.force_login(person)
        html = client.get(page_of(plan)).content.decode()
        assert "Only ops run plans for real." in html and 'id="run-for-real"' not in html
        refused = client.post(reverse("admin:backfill_run_bound", args=[plan.pk]))
        assert refused.status_code == 403
        assert "Refused: only ops start backfills." in refused.content.decode()
    assert DataMigration.objects.count() == 1


@pytest.mark.django_db
def test_a_plan_of_a_commands_file_says_where_it_can_be_run(client, wallets, ops, tmp_path):
    export = tmp_path / "export.jsonl"
    export.write_text("\n".join(EXPORT) + "\n")
    plan = run_requests.start_replay(path=str(export), dry_run=True)
    with export.open() as lines:
        file_replay.run_replay(plan, lines, gateway=wallets)
    client.force_login(ops)
    html = client.get(page_of(plan)).content.decode()
    assert 'id="run-for-real"' not in html
    assert "its file was named on a command line: run `replay_webhooks --plan` where that file is" in html
    assert str(tmp_path) not in html and "export.jsonl" in html  # the name, never the server's path


@pytest.mark.django_db
def test_a_csv_uploaded_as_a_replay_file_is_refused_at_upload(client, ops, uploads):
    client.force_login(ops)
    csv = SimpleUploadedFile("reversals.csv", f"{CSV_HEADER}\npay_1,re_1,,u1,30,2026-11-20\n".encode())
    response = client.post(reverse("admin:backfill_upload"), {"export": csv, "dry_run": "on"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Refused: this is not a JSON Lines export of provider events: its first line is not a JSON" in html
    assert "upload it with “Backfill reversals from a CSV”" in html
    assert DataMigration.objects.count() == 0 and list(uploads.iterdir()) == []


@pytest.mark.django_db
def test_an_empty_file_is_refused_at_upload(client, ops, uploads):
    client.force_login(ops)
    response = client.post(
        reverse("admin:backfill_upload"), {"export": SimpleUploadedFile("e.jsonl", b"\n\n")}
    )
    assert "Refused: the file is empty." in response.content.decode()
    assert DataMigration.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_ops_upload_finances_reversal_csv_dry_then_real(
    client, ops, uploads, gateway, django_capture_on_commit_callbacks
):
    gateway.write_wallets([("u1", 100, {"purchase-pay_1": {"type": "purchase", "amount": 100}})])
    rows = [CSV_HEADER, "pay_1,re_1,,u1,30,2026-11-21T10:00:00Z", "pay_1,,cb_1,u1,abc,2026-11-21T10:00:00Z"]
    client.force_login(ops)

    dry = upload(
        client,
        rows,
        view="admin:backfill_upload_reversals",
        name="r.csv",
        capture=django_capture_on_commit_callbacks,
    )
    plan = DataMigration.objects.get()
    html = dry.content.decode()
    assert (plan.kind, plan.source, plan.dry_run, plan.parameters["expected"]) == (
        "reversal_csv",
        "upload",
        True,
        2,
    )
    assert "Reversals from finance" in html
    assert "points must be a positive integer, got &#x27;abc&#x27;" in html
    assert plan.plan_items.get(line=2).outcome == "applied"
    assert points_of(gateway, "u1") == 100

    upload(
        client,
        rows,
        dry_run=False,
        view="admin:backfill_upload_reversals",
        name="r.csv",
        capture=django_capture_on_commit_callbacks,
    )
    real = DataMigration.objects.get(dry_run=False)
    assert (real.status, real.applied, real.quarantined) == ("completed", 1, 1)
    assert points_of(gateway, "u1") == 70


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content, refusal",
    [
        ('{"id": "evt_1"}\n', "this is a JSON Lines export, not finance&#x27;s reversal CSV"),
        ("payment_id,user_id,points\np,u,1\n", "the CSV&#x27;s first line lacks the columns refund_id"),
    ],
)
def test_the_reversal_upload_refuses_what_is_not_finances_csv(client, ops, uploads, content, refusal):
    client.force_login(ops)
    response = client.post(
        reverse("admin:backfill_upload_reversals"), {"export": SimpleUploadedFile("r.csv", content.encode())}
    )
    assert refusal in response.content.decode()
    assert DataMigration.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("view", ["admin:backfill_upload", "admin:backfill_upload_reversals"])
def test_only_ops_upload_files(client, reviewer, approver, outsider, view):
    for person in (reviewer, approver, outsider):
        client.force_login(person)
        response = client.get(reverse(view))
        assert response.status_code == 403
        assert 'id="refusal"' in response.content.decode()


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_progress_shows_how_many_of_the_total_counted_at_upload_and_refreshes_itself(
    client, ops, uploads, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    with django_capture_on_commit_callbacks():  # queued, no worker yet
        migration = run_requests.request_file_replay(export_file(EXPORT), dry_run=False, actor=ops)
    assert migration.parameters["expected"] == 8

    listing = client.get(reverse(CHANGELIST)).content.decode()
    assert '<meta http-equiv="refresh" content="5">' in listing
    assert "0 of 8" in listing
    now = timezone.now()
    DataMigration.objects.filter(pk=migration.pk).update(
        status="running",
        processed=1700,
        started_at=now - timedelta(seconds=17),
        parameters={**migration.parameters, "expected": 5000},
    )
    with time_machine.travel(now, tick=False):
        html = client.get(page_of(migration)).content.decode()
    assert '<meta http-equiv="refresh" content="5">' in html
    assert '<progress class="ra-progress" max="5000" value="1700"></progress>' in html
    assert "1,700 of 5,000" in html
    assert "100/s" in html and "33 s" in html  # 3,300 left at 100 a second


@pytest.mark.django_db
def test_a_finished_migration_page_does_not_reload(
    client, ops, uploads, wallets, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    upload(client, EXPORT, capture=django_capture_on_commit_callbacks)
    plan = DataMigration.objects.get()
    assert 'http-equiv="refresh"' not in client.get(page_of(plan)).content.decode()
    assert 'http-equiv="refresh"' not in client.get(reverse(CHANGELIST)).content.decode()


@pytest.mark.django_db
def test_the_rate_is_over_running_time_and_does_not_fall_while_paused(client, ops, gateway):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        migration = run_requests.request_stored_replay()
        DataMigration.objects.filter(pk=migration.pk).update(parameters={"expected": 1000})
        migration.refresh_from_db()
        lease = runs.claim(migration)
        clock.shift(10)
        runs.save_progress(migration, lease, {"applied": 100}, checkpoint=100)
        runs.set_status(migration.pk, "pause", actor=ops)
        clock.shift(3600)  # an hour paused
        migration.refresh_from_db()
        paused = progress.of(migration)
        assert (paused.rate, paused.seconds_left) == (10.0, None)

        runs.set_status(migration.pk, "resume", actor=ops)
        lease = runs.claim(DataMigration.objects.get(pk=migration.pk))
        clock.shift(10)
        runs.save_progress(migration, lease, {"applied": 100}, checkpoint=200)
        migration.refresh_from_db()
        running = progress.of(migration)
        assert running.running_seconds == pytest.approx(20)
        assert (running.rate, running.seconds_left) == (10.0, 80.0)

        client.force_login(ops)
        html = client.get(page_of(migration)).content.decode()
    assert "200 of 1,000" in html and '<div class="readonly">10/s</div>' in html and "1 min 20 s" in html


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_migration_pages_show_labels_names_and_one_date_format(
    client, wallets, ops, uploads, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    upload(client, EXPORT, dry_run=False, capture=django_capture_on_commit_callbacks)
    migration = DataMigration.objects.get()
    DataMigration.objects.filter(pk=migration.pk).update(applied=2648395)

    listing = client.get(reverse(CHANGELIST)).content.decode()
    html = client.get(page_of(migration)).content.decode()
    for text in (listing, html):
        assert "Replay of an export" in text and ">replay_file<" not in text
        assert f"{when(migration.created_at)}" in text
        assert "2,648,395" in text and "2648395" not in text
        # Where the file is kept never shows.
        assert str(uploads) not in text and migration.parameters["path"] not in text
    assert '<td data-label="Mode" class="field-mode">Real</td>' in listing
    assert "Uploaded in the admin" in html and "export.jsonl" in html


@pytest.mark.django_db
def test_deliveries_read_as_words_with_one_date_format(client, ops):
    delivery = stored("evt_1")
    client.force_login(ops)
    listing = client.get(reverse("admin:backfill_providereventdelivery_changelist")).content.decode()
    html = client.get(
        reverse("admin:backfill_providereventdelivery_change", args=[delivery.pk])
    ).content.decode()
    for text in (listing, html):
        assert "Payment succeeded" in text and "Webhook" in text and "Received" in text
        assert f"{when(delivery.received_at)}" in text
    assert "Provider event deliveries" in listing and "deliverys" not in listing
    assert "Provider event deliveries" in client.get("/admin/").content.decode()


@pytest.mark.django_db
def test_reviewers_and_approvers_watch_migrations_but_outsiders_are_refused(
    client, wallets, ops, reviewer, approver, outsider, uploads, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    upload(client, EXPORT, capture=django_capture_on_commit_callbacks)
    plan = DataMigration.objects.get()
    for person in (reviewer, approver):
        client.force_login(person)
        assert client.get(page_of(plan)).status_code == 200
        listing = client.get(reverse(CHANGELIST)).content.decode()
        assert 'id="upload-export"' not in listing
    client.force_login(outsider)
    refused = client.get(page_of(plan))
    assert refused.status_code == 403 and 'id="refusal"' in refused.content.decode()


@pytest.mark.django_db
def test_migration_pages_need_nothing_the_csp_refuses(
    client, wallets, ops, uploads, django_capture_on_commit_callbacks
):
    client.force_login(ops)
    upload(client, EXPORT, capture=django_capture_on_commit_callbacks)
    plan = DataMigration.objects.get()
    for url in [
        page_of(plan),
        page_of(plan) + "?outcome=quarantined",
        reverse("admin:backfill_upload_reversals"),
        reverse("admin:backfill_completeness"),
    ]:
        assert csp_refusals(client.get(url).content.decode()) == [], url


@pytest.mark.django_db
@pytest.mark.usefixtures("one_person_suffices")
def test_a_migration_page_shows_the_correlation_id_it_was_started_under(
    client, gateway, ops, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.MEDIA_ROOT = tmp_path
    put_wallets(gateway, {"u1": (0, []), "u2": (10, [10])})
    client.force_login(ops)
    export = SimpleUploadedFile("export.jsonl", ("\n".join(EXPORT) + "\n").encode())
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:backfill_upload"), {"export": export}, HTTP_X_REQUEST_ID="upload-0001-abcd"
        )

    migration = DataMigration.objects.get()
    assert migration.correlation_id == "upload-0001-abcd"
    page = client.get(reverse("admin:backfill_datamigration_change", args=[migration.pk])).content.decode()
    assert "upload-0001-abcd" in page
