"""One instant: a run reads every wallet and ledger as of its read time T0, and a
sealed run is re-derived at its T0 (`verify_reports --rederive`).

Reads at a point in time are real on Google's emulator only (our npm launcher
ignores them): these tests start one of their own when the session runs on
ours, so they run in every pass, and are skipped only where Google's emulator
is not installed. The fallback to reading live is tested on our launcher.
"""

import datetime as dt
import json
import os
import uuid
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from devtools.emulator import EmulatorUnavailable, google_available, running_emulator
from reconciliation import instant, reports, services
from reconciliation.models import ReadMode, ReconciliationRun, RunStatus, RunTrigger
from reconciliation.rederive import compare
from revassure.firestore import CONFIG, get_gateway
from tests.helpers import firestore_client, put_wallets


@pytest.fixture(scope="module")
def google_emulator(firestore_emulator, emulator_kind):
    """host:port of a Google emulator: the session's, or one of this module's own."""
    if emulator_kind == "google":
        yield firestore_emulator
        return
    if not google_available():
        pytest.skip(
            "reads at a point in time not tested: Google's Firestore emulator (the only one that "
            "honours read_time; google-cloud-cli-firestore-emulator with Java 17) is not installed"
        )
    try:
        with running_emulator(kind="google") as emulator:
            yield emulator.host
    except EmulatorUnavailable as exc:
        pytest.fail(f"Google's Firestore emulator did not start: {exc}")


@pytest.fixture(scope="module")
def npm_emulator(firestore_emulator, emulator_kind):
    """host:port of our npm launcher: the session's, or one of this module's own."""
    if emulator_kind == "npm":
        yield firestore_emulator
        return
    with running_emulator(kind="npm") as emulator:
        yield emulator.host


def gateway_at(host: str, settings, *, configured: bool = True):
    """A gateway on a fresh project of the emulator at `host` (the configured one,
    which commands and tasks use, unless told otherwise)."""
    project = f"pit-{uuid.uuid4().hex[:12]}"
    if configured:
        settings.GOOGLE_CLOUD_PROJECT = project
        settings.FIRESTORE_EMULATOR_HOST = host
    session = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = host  # the clients read it once, when made
    try:
        gateway = get_gateway(project)
        gateway.connect()  # connect now, to this emulator
    finally:
        if session is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = session
    return gateway


@pytest.fixture
def google(google_emulator, firestore_project, settings):
    return gateway_at(google_emulator, settings)


@pytest.fixture
def split_run(django_capture_on_commit_callbacks):
    """A run handed to workers: T0 picked and the wallets listed (the chunks are
    enqueued once that commits), then `between()` changes Firestore, then each
    chunk is checked, as a worker would later."""

    def run_split(gateway, between, scope_uids=()):
        run = ReconciliationRun.objects.create(trigger=RunTrigger.COMMAND, scope_uids=list(scope_uids))
        chunks = []
        with django_capture_on_commit_callbacks(execute=True):
            services.execute_run(run.pk, gateway=gateway, inline=False, enqueue_chunk=chunks.append)
        assert chunks
        between()
        for chunk_id in chunks:
            services.process_chunk(chunk_id, gateway=gateway)
        run.refresh_from_db()
        return run

    return run_split


@pytest.fixture
def npm(npm_emulator, firestore_project, settings):
    return gateway_at(npm_emulator, settings)


def rederive(run_id: int) -> tuple[int, dict]:
    out = StringIO()
    try:
        call_command("verify_reports", "--rederive", str(run_id), "--json", stdout=out, stderr=StringIO())
        code = 0
    except CommandError as exc:
        code = exc.returncode
    return code, json.loads(out.getvalue())


def change_after_t0(gateway):
    def between():
        # Balanced at T0, then credited without its wallet moving: drift after T0.
        gateway.write_wallets([("steady", 100, {"late": {"amount": 50, "type": "purchase"}})])
        # Drifted at T0 (+30), healed since.
        gateway.write_wallets([("healed", 70, {})])
        # Made after T0.
        put_wallets(gateway, {"newcomer": (5, [1])})

    return between


WALLETS = {"steady": (100, [60, 40]), "healed": (100, [70]), "drifted": (100, [60])}


# -- a run reads at T0 --------------------------------------------------------------


@pytest.mark.django_db
def test_a_split_run_judges_every_wallet_as_it_was_when_the_run_started(google, split_run):
    put_wallets(google, WALLETS)
    before = google.server_time()

    run = split_run(google, change_after_t0(google))

    assert run.status == RunStatus.COMPLETED
    assert run.read_mode == ReadMode.POINT_IN_TIME
    assert before <= run.read_time <= google.server_time()
    # The newcomer did not exist at T0; steady balanced at T0 (its later drift is the next run's).
    assert run.wallets_checked == 3
    (violation,) = run.violations.all()
    assert violation.uid == "drifted"
    assert violation.delta == 40  # at the live re-check
    assert violation.at_read_time == {"wallet_points": 100, "ledger_sum": 60, "delta": 40}
    # Disagreeing at T0, agreeing at the re-check: in the sealed report, not a violation.
    assert run.cleared_at_recheck == [{"uid": "healed", "wallet_points": 100, "ledger_sum": 70, "delta": 30}]


@pytest.mark.django_db
def test_the_sealed_report_and_its_mirror_carry_the_instant(google, split_run):
    put_wallets(google, WALLETS)

    run = split_run(google, change_after_t0(google))

    header = reports.header(run)
    assert header["read_mode"] == "point_in_time"
    assert header["read_time"] == run.read_time.isoformat()
    assert header["cleared_at_recheck"][0]["uid"] == "healed"
    (record,) = [reports.violation_record(v) for v in run.violations.all()]
    assert record["at_read_time"]["delta"] == 40 and record["held_at_recheck"] is True
    assert google.get_report(str(run.pk))["read_time"] == run.read_time.isoformat()
    checked, problems = reports.verify(gateway=google)
    assert (checked, problems) == (1, [])


@pytest.mark.django_db
def test_reconcile_json_and_the_admin_page_show_the_read_time(google, client, ops):
    put_wallets(google, WALLETS)
    out = StringIO()
    call_command("reconcile", "--json", stdout=out)
    result = json.loads(out.getvalue())
    run = ReconciliationRun.objects.get()

    assert result["read_mode"] == "point_in_time"
    assert result["read_time"] == run.read_time.isoformat()

    client.force_login(ops)
    page = client.get(reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk]))
    assert page.status_code == 200
    assert "Read time (T0)" in page.text and run.read_time.isoformat() in page.text


@pytest.mark.django_db
def test_a_scoped_run_reads_its_wallets_at_t0(google, split_run):
    put_wallets(google, WALLETS)

    def between():
        # The missing entry written after T0: it agrees since.
        google.write_wallets([("drifted", 100, {"late": {"amount": 40, "type": "purchase"}})])

    run = split_run(google, between, scope_uids=["drifted", "steady"])

    assert (run.read_mode, run.wallets_checked, run.violations_count) == (ReadMode.POINT_IN_TIME, 2, 0)
    assert run.cleared_at_recheck == [{"uid": "drifted", "wallet_points": 100, "ledger_sum": 60, "delta": 40}]


# -- when it reads live instead -------------------------------------------------------


@pytest.mark.django_db
def test_on_a_backend_that_ignores_read_times_the_run_reads_live_and_says_so(npm):
    put_wallets(npm, WALLETS)

    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=npm)

    assert run.status == RunStatus.COMPLETED
    assert (run.read_mode, run.read_time) == (ReadMode.LIVE, None)
    assert "answers reads at a read time with the present" in run.read_mode_reason
    header = reports.header(run)
    assert (header["read_mode"], header["read_time"]) == ("live", None)
    assert "reads live" in header["read_mode_reason"]


def test_the_probe_tells_the_emulators_apart_and_leaves_nothing_behind(
    google, google_emulator, npm_emulator, settings
):
    npm = gateway_at(npm_emulator, settings, configured=False)

    assert google.read_time_support().supported
    refused = npm.read_time_support()
    assert not refused.supported and "read time" in refused.reason
    for gateway, host in ((google, google_emulator), (npm, npm_emulator)):
        config = firestore_client(gateway.project, host=host).collection(CONFIG)
        assert [d.id for d in config.stream()] == []


@pytest.mark.django_db
def test_a_run_expected_to_outlast_the_window_reads_live_and_says_why(google, settings):
    put_wallets(google, WALLETS)
    settings.RECONCILE_EXPECTED_RATE = 0.0005  # 3 wallets: 100 minutes

    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=google)

    assert (run.read_mode, run.read_time) == (ReadMode.LIVE, None)
    assert (
        "3 wallets at 0.0005 wallets/s (RECONCILE_EXPECTED_RATE): about 100 minutes" in run.read_mode_reason
    )
    assert "would outlast the 60 minutes read-time window" in run.read_mode_reason
    assert "FIRESTORE_PITR_ENABLED" in run.read_mode_reason


@pytest.mark.django_db
def test_with_pitr_the_window_is_a_week_and_t0_falls_on_a_whole_minute(google, google_emulator, settings):
    put_wallets(google, WALLETS)
    settings.RECONCILE_EXPECTED_RATE = 0.0005
    settings.FIRESTORE_PITR_ENABLED = True

    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=google)

    assert run.read_mode == ReadMode.POINT_IN_TIME
    assert (run.read_time.second, run.read_time.microsecond) == (0, 0)
    assert "within the 7 days read-time window" in run.read_mode_reason
    # It sees Firestore as at the start of its minute: the wallets only if written before.
    written = (
        firestore_client(google.project, host=google_emulator).document("wallets/steady").get().update_time
    )
    assert run.wallets_checked == (3 if written <= run.read_time else 0)


@pytest.mark.django_db
def test_the_expected_rate_is_the_last_full_runs(google, monkeypatch):
    put_wallets(google, WALLETS)
    assert instant.expected_rate()[1] == "RECONCILE_EXPECTED_RATE"
    services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=google)
    # Too small to tell (its fixed costs dominate): not taken.
    assert instant.expected_rate()[1] == "RECONCILE_EXPECTED_RATE"
    monkeypatch.setattr(instant, "OBSERVED_MIN_WALLETS", 3)

    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=google)

    rate, source = instant.expected_rate()
    assert source == f"observed on run {run.pk}"
    assert rate == pytest.approx(3 / run.duration.total_seconds())


# -- re-deriving a sealed run -------------------------------------------------------


@pytest.mark.django_db
def test_a_sealed_run_is_rederived_at_its_instant(google, split_run):
    put_wallets(google, WALLETS)
    run = split_run(google, change_after_t0(google))

    code, result = rederive(run.pk)

    assert code == 0, result
    assert result["same"] is True and result["differences"] == []
    assert result["wallets_checked"] == {"report": 3, "rederived": 3}
    assert result["disagreeing_at_read_time"] == 2  # drifted (held) and healed (cleared)
    assert result["read_time"] == run.read_time.isoformat()


@pytest.mark.django_db
def test_rederived_against_other_data_the_differences_are_named(google, split_run, google_emulator, settings):
    elsewhere = gateway_at(google_emulator, settings, configured=False)
    put_wallets(elsewhere, {"steady": (100, [100]), "drifted": (100, [55]), "extra": (1, [2])})
    put_wallets(google, WALLETS)
    run = split_run(google, change_after_t0(google))
    settings.GOOGLE_CLOUD_PROJECT = elsewhere.project  # the wrong project, at the same instant

    code, result = rederive(run.pk)

    assert code == 2
    assert result["same"] is False
    assert result["differences"] == [
        "wallet drifted: the report has points 100, ledger sum 60, delta 40 at T0, "
        "re-derived points 100, ledger sum 55, delta 45",
        "wallet extra: disagrees at T0 (points 1, ledger sum 2, delta -1), the report does not list it",
        "wallet healed: the report has it disagreeing at T0 (points 100, ledger sum 70, delta 30), "
        "re-derived it does not",
    ]


@pytest.mark.django_db
def test_a_run_past_the_read_time_window_cannot_be_rederived(google, settings):
    put_wallets(google, WALLETS)
    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=google)

    with time_machine.travel(run.read_time + dt.timedelta(minutes=61), tick=False):
        code, result = rederive(run.pk)
        assert code == 1
        assert "outside Firestore's 60 minutes read-time window" in result["message"]

        settings.FIRESTORE_PITR_ENABLED = True  # 7 days of versions
        code, result = rederive(run.pk)
        assert code == 0, result


@pytest.mark.django_db
def test_a_run_that_read_live_cannot_be_rederived(npm):
    put_wallets(npm, WALLETS)
    run = services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=npm)

    code, result = rederive(run.pk)

    assert code == 1
    assert "read live, not at one instant" in result["message"]
    assert "answers reads at a read time with the present" in result["message"]


def test_wallets_checked_that_differ_are_named():
    differences = compare(sealed_checked=3, sealed={}, rederived_checked=4, rederived={})
    assert differences == ["wallets checked: the report has 3, re-derived 4"]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["google", "npm"])
def test_reconcile_says_how_it_read(kind, request):
    put_wallets(request.getfixturevalue(kind), WALLETS)
    out = StringIO()

    call_command("reconcile", stdout=out)

    run = ReconciliationRun.objects.get()
    if kind == "google":
        assert f"Read at one instant T0 = {run.read_time.isoformat()}." in out.getvalue()
    else:
        assert (
            "Read live: the Firestore backend answers reads at a read time with the present" in out.getvalue()
        )
