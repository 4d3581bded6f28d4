import csv
import io
import re
import socket

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from reconciliation import services
from reconciliation.models import ReconciliationRun, RunStatus, RunTrigger
from reconciliation.reports import describe_details
from reconciliation.wallet_checks import MAX_LISTED_MALFORMED
from revassure.flags import set_flag
from tests.helpers import put_wallets

CHANGELIST = "admin:reconciliation_reconciliationrun_changelist"
RUN_NOW = "admin:reconciliation_run_now"


@pytest.fixture
def finished_run(gateway):
    put_wallets(gateway, {"u1": (12, [10]), "u2": (3, [3]), "u3": (5, [2, 2.5]), "=evil": (0, [1])})
    return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", "password")


@pytest.mark.django_db
def test_every_reconciliation_admin_page_renders(client, superuser, finished_run):
    client.force_login(superuser)
    violation = finished_run.violations.first()
    urls = [
        reverse("admin:index"),
        reverse(CHANGELIST),
        reverse(CHANGELIST) + "?status__exact=completed",
        reverse("admin:reconciliation_reconciliationrun_change", args=[finished_run.pk]),
        reverse("admin:reconciliation_violation_changelist"),
        reverse("admin:reconciliation_violation_changelist") + f"?run__id__exact={finished_run.pk}",
        reverse("admin:reconciliation_violation_change", args=[violation.pk]),
        reverse("admin:revassure_featureflag_changelist"),
        reverse("admin:revassure_featureflag_change", args=[1]),
    ]
    for url in urls:
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_the_run_list_shows_counts_drift_and_progress(client, reviewer, finished_run):
    client.force_login(reviewer)
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert f'run__id__exact={finished_run.pk}">3</a>' in page
    assert re.search(
        r'class="field-drift_display"[^>]*>6</td>', page
    )  # u1 +2, u3 +3 (2.5 left out), =evil -1
    assert re.search(r'class="field-progress"[^>]*>Done</td>', page)
    assert "Run reconciliation now" not in page  # reviewers cannot start runs


@pytest.mark.django_db
def test_run_now_queues_a_run_for_ops(client, ops, gateway, django_capture_on_commit_callbacks):
    put_wallets(gateway, {"u1": (2, [1])})
    client.force_login(ops)
    assert "Run reconciliation now" in client.get(reverse(CHANGELIST)).content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse(RUN_NOW), follow=True)

    run = ReconciliationRun.objects.get()
    assert f"Reconciliation run {run.pk} queued" in response.content.decode()
    assert (run.trigger, run.requested_by, run.status) == ("admin", ops, RunStatus.COMPLETED)
    assert run.violations_count == 1


@pytest.mark.django_db
def test_run_now_is_refused_for_other_roles_and_for_get(client, reviewer, approver, outsider):
    for user in (reviewer, approver, outsider):
        client.force_login(user)
        assert client.post(reverse(RUN_NOW)).status_code == 403
    client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
    assert client.get(reverse(RUN_NOW)).status_code == 405
    assert not ReconciliationRun.objects.exists()


@pytest.mark.django_db
def test_run_now_says_why_when_the_flag_is_off(client, ops):
    set_flag("reconciliation_enabled", False, actor=ops, reason="firestore migration")
    client.force_login(ops)

    response = client.post(reverse(RUN_NOW), follow=True)

    assert "Reconciliation refused: feature flag &#x27;reconciliation_enabled&#x27; is off" in (
        response.content.decode()
    )
    assert not ReconciliationRun.objects.exists()


@pytest.mark.django_db
def test_a_run_page_says_which_machines_counted_its_chunks(client, reviewer, gateway, settings):
    settings.RECONCILE_CHUNK_SIZE = 1
    put_wallets(gateway, {"u1": (1, [1]), "u2": (2, [2])})
    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)
    client.force_login(reviewer)

    url = reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk])
    page = client.get(url).content.decode()

    assert run.checked_by == {socket.gethostname(): 2}
    assert f"{socket.gethostname()}: 2 chunks" in page


@pytest.mark.django_db
def test_finished_runs_cannot_be_changed_or_deleted_in_the_admin(client, superuser, finished_run):
    client.force_login(superuser)
    change_url = reverse("admin:reconciliation_reconciliationrun_change", args=[finished_run.pk])
    delete_url = reverse("admin:reconciliation_reconciliationrun_delete", args=[finished_run.pk])

    assert client.post(change_url, {"status": "pending"}).status_code == 403
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:reconciliation_reconciliationrun_add")).status_code == 403
    finished_run.refresh_from_db()
    assert finished_run.status == RunStatus.COMPLETED


@pytest.mark.django_db
def test_violation_filters_and_uid_search(client, reviewer, finished_run):
    client.force_login(reviewer)
    url = reverse("admin:reconciliation_violation_changelist")

    def uids(query):
        response = client.get(url + query)
        return sorted(v.uid for v in response.context["cl"].result_list)

    assert uids("") == ["=evil", "u1", "u3"]
    assert uids("?kind__exact=malformed") == ["u3"]
    assert uids("?sign=over") == ["u1", "u3"]
    assert uids("?sign=under") == ["=evil"]
    assert uids("?size=small") == ["=evil", "u1", "u3"]
    assert uids("?size=medium") == []
    assert uids("?q=u1") == ["u1"]
    page = client.get(url + "?kind__exact=malformed").content.decode()
    assert "e001: not an integer (float 2.5)" in page


@pytest.mark.django_db
def test_csv_export_lists_every_violation_and_the_summary_holds_the_liability_check(
    client, reviewer, finished_run
):
    client.force_login(reviewer)

    response = client.get(reverse("admin:reconciliation_run_export", args=[finished_run.pk]))
    summary = client.get(reverse("admin:reconciliation_run_summary", args=[finished_run.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == [
        "run_id",
        "uid",
        "kind",
        "wallet_points",
        "ledger_sum",
        "delta",
        "entries",
        "details",
        "heal_request_id",
        "heal_state",
    ]
    assert rows[1][:7] == [str(finished_run.pk), "'=evil", "drift", "0", "1", "-1", "1"]
    assert rows[2][:7] == [str(finished_run.pk), "u1", "drift", "12", "10", "2", "1"]
    assert rows[3][1:3] == ["u3", "malformed"] and "not an integer" in rows[3][7]
    assert len(rows) == 4  # the data and nothing after it
    header, values = csv.reader(io.StringIO(b"".join(summary.streaming_content).decode()))
    record = dict(zip(header, values, strict=True))
    assert record["liability_difference"] == str(finished_run.liability_difference)
    assert record["checksum"] == finished_run.checksum


@pytest.mark.django_db
def test_csv_export_neutralises_every_formula_trigger_and_keeps_numbers_numbers(client, reviewer, gateway):
    # OWASP's CSV injection list: =, +, -, @, TAB (0x09) and CR (0x0D) at the start of a cell.
    uids = ["=cmd", "+cmd", "-cmd", "@cmd", "\tcmd", "\rcmd"]
    put_wallets(gateway, {uid: (0, [5]) for uid in uids})
    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)
    client.force_login(reviewer)

    response = client.get(reverse("admin:reconciliation_run_export", args=[run.pk]))

    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    violations = {row[1]: row for row in rows[1:]}
    assert sorted(violations) == sorted("'" + uid for uid in uids)
    for row in violations.values():
        assert row[3:7] == ["0", "5", "-5", "1"]  # a signed number in a numeric column is data


@pytest.mark.django_db
def test_csv_export_says_how_many_more_malformed_entries_there_are_as_the_admin_does(
    client, reviewer, gateway
):
    put_wallets(gateway, {"many": (1, ["x"] * (MAX_LISTED_MALFORMED + 3))})
    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)
    client.force_login(reviewer)

    response = client.get(reverse("admin:reconciliation_run_export", args=[run.pk]))

    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    details = rows[1][7]
    assert details.endswith("; and 3 more malformed entries")
    assert details == describe_details(run.violations.get().details)


@pytest.mark.django_db
def test_csv_export_is_refused_without_the_permission(client, ops, outsider, finished_run):
    for user in (ops, outsider):
        client.force_login(user)
        assert (
            client.get(reverse("admin:reconciliation_run_export", args=[finished_run.pk])).status_code == 403
        )


@pytest.mark.django_db
def test_an_outsider_sees_no_reports(client, outsider, finished_run):
    client.force_login(outsider)
    assert client.get(reverse(CHANGELIST)).status_code == 403
    assert client.get(reverse("admin:reconciliation_violation_changelist")).status_code == 403


@pytest.mark.django_db
def test_the_run_list_refreshes_itself_while_a_run_is_in_progress(client, reviewer, finished_run):
    client.force_login(reviewer)
    assert 'http-equiv="refresh"' not in client.get(reverse(CHANGELIST)).content.decode()

    ReconciliationRun.objects.create(trigger=RunTrigger.SCHEDULE)
    ReconciliationRun.objects.create(
        trigger=RunTrigger.ADMIN, status="running", chunks_total=4, chunks_done=1
    )
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "Queued" in page
    assert '<progress max="4" value="1"></progress> 1/4 chunks' in page
