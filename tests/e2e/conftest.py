"""Browser tests: headless Chromium (Debian's package, driven by Playwright)
against the real product, started once for the package; and the outside
monitoring of that product (a real Prometheus scraping its /metrics).

- a web server (gunicorn, as in production) on a free loopback port and a real
  `qcluster` beside it, both on a SQLite file of their own with the ORM broker
  (a server process cannot see pytest's test database; in CI's PostgreSQL pass
  they still use their own file, so nothing is shared with the other tests);
- the session's Firestore emulator, in a project of its own, seeded with
  realistic wallets (some drifted, one malformed) and a few named ones the
  journeys work on, then reconciled once;
- one user per role, a staff user without a role and a user who is not staff;
- a real SMTP server on loopback (aiosmtpd) as the site's mail server: alert
  emails and inbox notices land in `site.mailbox`, their links pointing at the
  running site.

Every journey saves a screenshot of its last screen in e2e-screenshots/ and
fails on any console error or content-security-policy violation in any page it
opened.
"""

import email
import email.message
import email.policy
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Page, expect, sync_playwright

from demo.wallets import demo_wallets
from devtools.emulator import ROOT, free_port
from revassure.firestore import FirestoreGateway
from revassure.roles import APPROVER, OPS, REVIEWER
from tests.helpers import ledger, stop_process_group

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "e2e-screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# username: (role, is_staff)
USERS = {
    "rita": (REVIEWER, True),
    "abe": (APPROVER, True),
    "otto": (OPS, True),
    "nora": (None, True),  # staff, but in no role
    "oscar": (None, False),  # an outsider: an account, not staff
}

# The wallets the journeys work on, beside the demo ones: uid -> (points, ledger amounts).
NAMED_WALLETS = {
    "cust-heal-0001": (12_345, [10_000, 2_300]),  # 45 points above its ledger
    "cust-phone-0002": (800, [1_000]),  # 200 points below its ledger
    "cust-adjust-0003": (2_500, [2_000, 500]),  # clean
    "cust-replay-0004": (0, []),
    "cust-replay-0005": (0, []),
    "cust-work-0006": (624, [209]),  # 415 points above its ledger
    "cust-fix-0007": (550, [430, "120"]),  # malformed: an amount of "120", a string the sum skips
}

SETUP = """
import json, os
from django.contrib.auth.models import Group, User
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
password = os.environ["E2E_PASSWORD"]
for username, (role, staff) in json.loads(os.environ["E2E_USERS"]).items():
    user = User.objects.create_user(username, f"{username}@example.com", password, is_staff=staff)
    if role:
        user.groups.add(Group.objects.get(name=role))
call_command("reconcile", "--json")
"""


def dated(entries: dict) -> dict:
    """Ledger entries written a day apart, as the points app writes them."""
    first = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    return {
        key: {**fields, "createdAt": first + timedelta(days=n)}
        for n, (key, fields) in enumerate(entries.items())
    }


class Mailbox:
    """aiosmtpd handler: every message the site sent, parsed, in the order received."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def wait_for(self, subject: str, timeout: float = 60) -> email.message.EmailMessage:
        """The first message whose subject contains `subject`, once it has arrived."""
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages if subject in m["Subject"]]
            if found:
                return found[0]
            assert time.monotonic() < deadline, (
                f"no email about {subject!r} within {timeout} s; got {[m['Subject'] for m in self.messages]}"
            )
            time.sleep(0.2)


@dataclass
class Site:
    url: str
    env: dict
    password: str
    project: str
    first_run: dict
    mailbox: Mailbox
    logs: list[Path] = field(default_factory=list)
    cluster: subprocess.Popen | None = None

    @contextmanager
    def workers_paused(self):
        """The qcluster stopped (SIGSTOP to its process group) while the block runs: what
        was asked of the workers waits, as it would for a busy cluster; then it goes on."""
        assert self.cluster is not None
        os.killpg(self.cluster.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.cluster.pid, signal.SIGCONT)

    def manage(self, *args, timeout=180) -> str:
        """A management command against the running product (its database, its emulator)."""
        return _manage(self.env, *args, timeout=timeout)

    def log_tails(self, chars: int = 4000) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}" for path in self.logs
        )


def _manage(env, *args, timeout=180) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def _start(env, args, log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_ready(url: str, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited:\n{log.read_text()[-4000:]}"
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server was not ready within {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="package")
def site(firestore_emulator, tmp_path_factory):
    """The running product: web server, qcluster, seeded Firestore, first run done."""
    workdir = tmp_path_factory.mktemp("e2e")
    project = f"e2e-{uuid.uuid4().hex[:10]}"
    password = secrets.token_urlsafe(12)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.e2e.server_settings",
        DATABASE_URL=f"sqlite:///{workdir / 'e2e.sqlite3'}",
        GOOGLE_CLOUD_PROJECT=project,
        FIRESTORE_EMULATOR_HOST=firestore_emulator,
        MEDIA_ROOT=str(workdir / "uploads"),
        SNAPSHOT_DIR=str(workdir / "snapshots"),  # the cutover's snapshot step writes here
        # Its own: gunicorn.conf.py wipes the directory when the server starts, and the
        # one pytest-env names is shared by every test run on the machine.
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
        Q_CLUSTER_NAME=f"e2e-{uuid.uuid4().hex[:8]}",
        Q_WORKERS="1",
        LOG_LEVEL="WARNING",
        E2E_PASSWORD=password,
        METRICS_TOKEN=secrets.token_urlsafe(24),  # what an outside Prometheus sends
        E2E_USERS=json.dumps(USERS),
        # Mail through a real SMTP server; links in it lead to this site.
        EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}",
        ALERT_EMAILS="oncall@example.com",
        ALERT_FROM_EMAIL="revassure-alerts@example.com",
        SITE_URL=url,
        # The daily run twelve hours away: a session that crossed the default 02:00 UTC
        # had the scheduler start a full run of its own mid-journey, and the dashboard's
        # "last full run" was no longer the one the journeys compare with.
        RECONCILE_DAILY_AT=f"{(datetime.now(UTC) + timedelta(hours=12)):%H:%M}",
    )
    (workdir / "metrics").mkdir()
    gateway = FirestoreGateway(project)
    gateway.write_wallets(demo_wallets(24, entries_per_wallet=12, drift_share=0.25, malformed=1, seed=15))
    gateway.write_wallets(
        (uid, points, dated(ledger(*amounts))) for uid, (points, amounts) in NAMED_WALLETS.items()
    )
    first_run = json.loads(_manage(env, "shell", "-c", SETUP).strip().splitlines()[-1])
    assert first_run["status"] == "completed", first_run

    server_log, cluster_log = workdir / "gunicorn.log", workdir / "qcluster.log"
    notify_log = workdir / "qcluster-notify.log"
    server = _start(
        env,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "revassure.wsgi:application",
            f"--bind=127.0.0.1:{port}",
            "--workers=1",
            "--threads=8",
        ],
        server_log,
    )
    cluster = notify = None
    try:
        _wait_ready(url, server, server_log)
        # After the server: its start wipes the metrics directory the worker writes to.
        cluster = _start(env, [sys.executable, "manage.py", "qcluster"], cluster_log)
        # The notify cluster (alert emails, inbox notices), as make demo and production run it.
        notify_env = {**env, "Q_CLUSTER_NAME": env["Q_CLUSTER_NAME"] + "-notify"}
        notify = _start(notify_env, [sys.executable, "manage.py", "qcluster"], notify_log)
        yield Site(
            url,
            env,
            password,
            project,
            first_run,
            mailbox,
            logs=[server_log, cluster_log, notify_log],
            cluster=cluster,
        )
    finally:
        for workers in (notify, cluster):
            if workers is not None:
                stop_process_group(workers)
        stop_process_group(server)
        smtp.stop()


@pytest.fixture(scope="package")
def browser():
    # Package scope: Playwright's event loop must be gone before other tests use the ORM.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


def pytest_collection_modifyitems(config, items):
    """The journeys' site runs on a SQLite file of its own and the ORM broker,
    whatever DATABASE_URL and REDIS_URL say: CI's PostgreSQL pass would repeat
    them to the letter, and skips them (tests/conftest.py)."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.same_on_every_database)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.e2e_failed = report.failed
    return report


class People:
    """Signs people in, each in a browser context of their own, and watches
    every page they open for console errors and CSP violations."""

    def __init__(self, browser, site: Site, name: str):
        self.browser, self.site, self.name = browser, site, name
        self.contexts, self.pages, self.errors = [], [], []
        self.allowed_statuses: set[int] = set()

    def open(self, *, phone: bool = False) -> Page:
        """A page in a new context, signed in as nobody."""
        viewport = PHONE if phone else DESKTOP
        context = self.browser.new_context(
            base_url=self.site.url, viewport=viewport, is_mobile=phone, has_touch=phone
        )
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: uncaught {error}"))
        self.contexts.append(context)
        self.pages.append(page)
        return page

    def sign_in(self, username: str, *, phone: bool = False) -> Page:
        page = self.open(phone=phone)
        page.goto("/admin/login/?next=/admin/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(self.site.password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/admin/")
        return page

    def allow_status(self, status: int) -> None:
        """A journey that visits refusals on purpose: the browser logs each as a failed load."""
        self.allowed_statuses.add(status)

    def _console(self, page, message) -> None:
        if message.type != "error":
            return
        text = message.text
        source = message.location.get("url") or ""
        if any(f"status of {status} " in text for status in self.allowed_statuses):
            return
        if source.endswith("/favicon.ico"):
            return  # the browser's own request, not the page's: the admin names no icon
        self.errors.append(f"{page.url}: {text}" + (f" ({source})" if source and source != page.url else ""))

    def fits_the_screen(self, page: Page) -> None:
        """Nothing to scroll sideways: the page, loaded with its stylesheets, is no wider
        than the window, and no table scrolls inside its box (a change list's columns)."""
        page.wait_for_load_state()
        width = page.viewport_size["width"]
        overflow = page.evaluate(
            """() => [document.documentElement, ...document.querySelectorAll('.results')]
                .filter(el => el.scrollWidth > el.clientWidth + 1)
                .map(el => `${el.tagName}.${el.className}: ${el.scrollWidth} > ${el.clientWidth}`)"""
        )
        assert overflow == [], f"{page.url} at {width} px scrolls sideways: {overflow}"

    def reload_until(self, page: Page, locator, text: str, timeout: float = 60) -> None:
        """What a person does while a worker is busy: reload the page until it shows `text`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                expect(locator).to_contain_text(text, timeout=1000)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                page.reload()

    def screenshot(self, page: Page, suffix: str = "") -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{self.name}{suffix}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def people(browser, site, request):
    crowd = People(browser, site, request.node.name)
    yield crowd
    if getattr(request.node, "e2e_failed", False):
        SCREENSHOTS.mkdir(exist_ok=True)
        for n, page in enumerate(crowd.pages):
            if not page.is_closed():
                page.screenshot(path=str(SCREENSHOTS / f"{crowd.name}-failed-{n}.png"), full_page=True)
        sys.stderr.write(site.log_tails())
    crowd.close()
    assert crowd.errors == [], "console errors or CSP violations:\n" + "\n".join(crowd.errors)
