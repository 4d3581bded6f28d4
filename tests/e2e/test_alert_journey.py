"""Journey: an alert people act on (issue 25). The first run found violations;
the alert "Violations found" opens and its email goes out through the site's
real mail server, in plain text and HTML, with links into the product. A
reviewer finds it in her inbox and is told only ops acknowledge it. Ops follow
the email's link to the alert (signing in on the way), acknowledge it from its
page, and the email's Acknowledge link then says it is done; its "where to
look" link opens the run's violations. The reviewer's inbox no longer lists it."""

import re
from urllib.parse import urlsplit

from playwright.sync_api import expect

SUBJECT = "Alert: Violations found: "
BECAUSE = "On it: the violations of the first run are the demo's drift, worked as breaks."


def link(text: str, label: str) -> str:
    """The address on the line of the email's plain text that starts with `label`
    (or, for "Where to look", on the line after it)."""
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line.startswith(label):
            found = re.search(r"https?://\S+", line) or re.search(r"https?://\S+", lines[n + 1])
            assert found, line
            return found.group()
    raise AssertionError(f"no line {label!r} in:\n{text}")


def test_an_alert_is_acknowledged_from_its_page_after_its_emails_link_is_followed(people, site):
    mail = site.mailbox.wait_for(SUBJECT)
    assert mail["From"] == "revassure-alerts@example.com"
    assert mail["To"] == "oncall@example.com"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    alert_url, acknowledge_url = link(text, "The alert:"), link(text, "Acknowledge")
    where_url = link(text, "Where to look:")
    for url in (alert_url, acknowledge_url, where_url):
        assert url.startswith(site.url + "/admin/"), url  # links into this very site
        assert f'href="{url.replace("&", "&amp;")}"' in html, url  # the HTML part links the same
    alert_id = re.search(r"/alert/(\d+)/", alert_url).group(1)
    summary = mail["Subject"].split(SUBJECT, 1)[1]

    # The reviewer's area: the alert waits in her inbox; she looks, only ops acknowledge.
    reviewer = people.sign_in("rita")
    reviewer.locator("#inbox-link").click()
    waiting = reviewer.locator(f"#inbox-item-alert-{alert_id}")
    expect(waiting).to_contain_text(f"Violations found: {summary}")
    waiting.get_by_role("link", name="Look").click()
    expect(reviewer).to_have_url(re.compile(f"/admin/observability/alert/{alert_id}/change/"))
    expect(reviewer.locator("#alert-acknowledge-link")).to_have_count(0)

    # Ops follow the email's link: signed out, the sign-in page comes first, then the alert.
    ops = people.open()
    ops.goto(alert_url)
    expect(ops).to_have_url(re.compile(r"/admin/login/\?next="))
    ops.get_by_label("Username").fill("otto")
    ops.get_by_label("Password").fill(site.password)
    ops.get_by_role("button", name="Log in").click()
    expect(ops).to_have_url(alert_url)
    expect(ops.locator("#content")).to_contain_text(summary)
    people.fits_the_screen(ops)

    # Acknowledged from its page.
    ops.locator("#alert-acknowledge-link").click()
    expect(ops.locator("#alert-acknowledge-form")).to_be_visible()
    ops.get_by_label("Reason").fill(BECAUSE)
    ops.get_by_role("button", name="Acknowledge").click()
    expect(ops.get_by_text(f"Alert {alert_id} acknowledged: no more repeats")).to_be_visible()
    expect(ops).to_have_url(alert_url)
    expect(ops.locator("#content")).to_contain_text(BECAUSE)
    expect(ops.locator("#alert-acknowledge-link")).to_have_count(0)

    # The email's own Acknowledge link now says it is done, and changes nothing.
    ops.goto(acknowledge_url)
    expect(ops.locator("#alert-acknowledge-refused")).to_contain_text(
        "This alert cannot be acknowledged now: otto acknowledged it at"
    )
    expect(ops.locator("#alert-acknowledge-form")).to_have_count(0)

    # Where to look: the violations of the run that raised it.
    ops.goto(where_url)
    expect(ops.locator("#result_list tbody tr").first).to_be_visible()
    assert urlsplit(ops.url).query == urlsplit(where_url).query  # its filter held, not refused
    people.fits_the_screen(ops)

    # Someone is on it: it leaves the reviewer's inbox.
    reviewer.locator("#inbox-link").click()
    expect(reviewer.get_by_role("heading", name="Waiting for you")).to_be_visible()
    expect(reviewer.locator(f"#inbox-item-alert-{alert_id}")).to_have_count(0)
    people.screenshot(ops)
