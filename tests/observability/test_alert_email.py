"""Alert emails people can act on (issue 25): plain text and HTML, a human
subject and body, from the configured sender, links into the product (the
alert, where to look, acknowledge and silence), sent through a real SMTP
server; and the pages those links open, which change nothing on a GET."""

import email
import email.policy
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.core.checks import run_checks
from django.urls import reverse

from observability import targets
from observability.models import Alert, AlertRule, AlertState
from reconciliation.models import Break, BreakResolution, BreakStatus, ReconciliationRun, RunStatus

SITE = "https://backoffice.example.com"
T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def only(rule_name):
    AlertRule.objects.exclude(name=rule_name).update(enabled=False)


def completed_run(at, **fields):
    with time_machine.travel(at, tick=False):
        return ReconciliationRun.objects.create(
            trigger="command", finished_at=at, status=RunStatus.COMPLETED, **fields
        )


def break_older_than():
    """A break of w1 open for 8 days; the function that closes it."""
    seen = completed_run(T0 - timedelta(days=8), violations_count=1, drift_count=1, total_abs_drift=5)
    aged = Break.objects.create(
        uid="w1",
        kind="drift",
        wallet_points=5,
        ledger_sum=0,
        delta=5,
        size=5,
        first_seen=T0 - timedelta(days=8),
        last_seen=T0,
        first_run=seen,
        last_run=seen,
    )

    def clear(at):
        Break.objects.filter(pk=aged.pk).update(
            status=BreakStatus.CLOSED, resolution=BreakResolution.CLEARED, closed_at=at
        )

    return clear


def parsed(message):
    return email.message_from_bytes(message["content"].encode(), policy=email.policy.default)


def parts(message):
    mail = parsed(message)
    return (
        mail,
        mail.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n"),
        mail.get_body(preferencelist=("html",)).get_content(),
    )


def path_of(url: str) -> str:
    assert url.startswith(SITE + "/"), url
    split = urlsplit(url)
    return split.path + (f"?{split.query}" if split.query else "")


@pytest.fixture
def aged_break(smtp, run_evaluation):
    """A break open for 8 days: the rule 'Break older than 7 days' fires, by email."""
    only("break_older_than")
    clear = break_older_than()
    [alert] = run_evaluation(T0).opened
    return alert, clear


@pytest.mark.django_db
def test_an_alert_email_is_plain_text_and_html_with_a_human_subject_from_the_configured_sender(
    smtp, aged_break
):
    alert, _ = aged_break
    [message] = smtp.messages

    mail, text, html = parts(message)

    assert mail.get_content_type() == "multipart/alternative"
    assert mail["From"] == "revassure-alerts@example.com"
    assert mail["Subject"] == (
        "[revassure] Alert: Break older than 7 days: 1 open break older than 7 days, the oldest 8 days old"
    )
    assert "break_older_than" not in text and "break_older_than" not in html
    assert text.startswith("Break older than 7 days\nOpen since 26 Nov 2026, 08:00 UTC.\n")
    assert "The rule: A break has been open for more than 7 days." in text
    brk = reverse("admin:reconciliation_break_change", args=[alert_break_pk()])
    assert f"Where to look: The oldest open break (w1)\n  {SITE}{brk}\n" in text
    assert f"The alert: {SITE}/admin/observability/alert/{alert.pk}/change/" in text
    assert (
        f"Acknowledge (stops the repeats): {SITE}/admin/observability/alert/{alert.pk}/acknowledge/" in text
    )
    assert f"Silence for a while: {SITE}/admin/observability/alert/{alert.pk}/silence/" in text
    # The HTML says the same, its links the same addresses.
    assert "<h1" in html and "Break older than 7 days</h1>" in html
    for url in (
        f"{SITE}{brk}",
        f"{SITE}/admin/observability/alert/{alert.pk}/change/",
        f"{SITE}/admin/observability/alert/{alert.pk}/acknowledge/",
        f"{SITE}/admin/observability/alert/{alert.pk}/silence/",
    ):
        assert f'href="{url}"' in html


def alert_break_pk():
    return Break.objects.get(uid="w1").pk


@pytest.mark.django_db
def test_the_resolution_says_when_and_how_long_and_offers_no_acknowledge(smtp, aged_break, run_evaluation):
    alert, clear = aged_break
    clear(T0 + timedelta(hours=2))
    run_evaluation(T0 + timedelta(hours=2))

    mail, text, html = parts(smtp.messages[1])

    assert mail["Subject"].startswith("[revassure] Resolved: Break older than 7 days: ")
    assert "Resolved at 26 Nov 2026, 10:00 UTC, after 2\xa0hours." in text
    assert "/acknowledge/" not in text and "/acknowledge/" not in html
    assert f"{SITE}/admin/observability/alert/{alert.pk}/change/" in text


@pytest.mark.django_db
def test_the_run_rules_point_at_the_run_and_its_violations(smtp, run_evaluation):
    only("violations_found")
    completed_run(T0, violations_count=2, drift_count=2, total_abs_drift=7)
    run_evaluation(T0)

    _, text, _ = parts(smtp.messages[0])

    assert "Where to look: The violations of run " in text
    assert "/admin/reconciliation/violation/?run__id__exact=" in text


@pytest.mark.django_db
def test_the_acknowledge_link_asks_a_signed_in_person_and_changes_nothing_on_a_get(
    client, smtp, aged_break, ops, reviewer
):
    alert, _ = aged_break
    _, text, _ = parts(smtp.messages[0])
    link = next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Acknowledge"))
    url = path_of(link)

    anonymous = client.get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/?next=")
    client.force_login(reviewer)
    assert client.get(url).status_code == 403  # only ops acknowledge
    assert client.post(url, {"reason": "mine"}).status_code == 403
    client.force_login(ops)
    form = client.get(url)
    assert form.status_code == 200
    body = form.content.decode()
    assert 'id="alert-acknowledge-form"' in body and "Break older than 7 days" in body
    assert Alert.objects.get(pk=alert.pk).state == AlertState.OPEN  # a GET changes nothing

    no_reason = client.post(url, {"reason": ""})
    assert no_reason.status_code == 200 and "This field is required." in no_reason.content.decode()
    done = client.post(url, {"reason": "on it, the batch job of the 18th"}, follow=True)

    assert done.redirect_chain == [(f"/admin/observability/alert/{alert.pk}/change/", 302)]
    stored = Alert.objects.get(pk=alert.pk)
    assert (stored.state, stored.acknowledged_by, stored.note) == (
        AlertState.ACKNOWLEDGED,
        ops,
        "on it, the batch job of the 18th",
    )
    assert f"Alert {alert.pk} acknowledged" in done.content.decode()
    again = client.get(url).content.decode()
    assert "This alert cannot be acknowledged now: olga acknowledged it at" in again
    assert 'id="alert-acknowledge-form"' not in again


@pytest.mark.django_db
def test_the_silence_link_silences_for_the_hours_given(client, smtp, aged_break, ops):
    alert, _ = aged_break
    url = reverse("admin:observability_alert_silence", args=[alert.pk])
    client.force_login(ops)

    too_long = client.post(url, {"hours": "9999", "reason": "x"})
    assert too_long.status_code == 200 and "Ensure this value is less than or equal to 720." in (
        too_long.content.decode()
    )
    with time_machine.travel(T0, tick=False):
        done = client.post(url, {"hours": "6", "reason": "known, fixing tomorrow"}, follow=True)

    stored = Alert.objects.get(pk=alert.pk)
    assert (stored.state, stored.silenced_until) == (AlertState.SILENCED, T0 + timedelta(hours=6))
    assert f"Alert {alert.pk} silenced until 26 Nov 2026, 14:00 UTC." in done.content.decode()


@pytest.mark.django_db
def test_the_alert_page_offers_acknowledge_and_silence_and_where_to_look(
    client, smtp, aged_break, ops, reviewer
):
    alert, _ = aged_break
    page = reverse("admin:observability_alert_change", args=[alert.pk])
    client.force_login(ops)

    body = client.get(page).content.decode()

    assert f'href="{reverse("admin:observability_alert_acknowledge", args=[alert.pk])}"' in body
    assert f'href="{reverse("admin:observability_alert_silence", args=[alert.pk])}"' in body
    assert 'id="alert-where">The oldest open break (w1)</a>' in body
    client.force_login(reviewer)
    body = client.get(page).content.decode()
    assert "/acknowledge/" not in body and 'id="alert-refused"' not in body


def test_the_sender_and_the_site_url_are_checked_when_alert_emails_go_out(settings):
    def errors():
        return {e.id: e.msg for e in run_checks() if e.id in ("revassure.E033", "revassure.E034")}

    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.ALERT_FROM_EMAIL = "webmaster@localhost"  # Django's default sender
    settings.SITE_URL = "backoffice.example.com"
    found = errors()
    assert "ALERT_FROM_EMAIL (or DEFAULT_FROM_EMAIL)" in found["revassure.E033"]
    assert "'webmaster@localhost'" in found["revassure.E033"]
    assert "SITE_URL" in found["revassure.E034"]

    settings.ALERT_FROM_EMAIL = "revassure-alerts@example.com"
    settings.SITE_URL = "https://backoffice.example.com"
    assert errors() == {}
    settings.ALERT_EMAILS = []
    settings.ALERT_FROM_EMAIL = "webmaster@localhost"
    assert errors() == {}  # no alert email goes out


@pytest.mark.django_db
def test_every_rule_has_a_place_to_look(smtp):
    assert set(targets.TARGETS) == set(AlertRule.objects.values_list("name", flat=True))
