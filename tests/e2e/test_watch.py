"""The journeys' watch on every page: it sees what a user's browser refuses or
throws. Proven here on the real server, so a journey's silence means something."""

from playwright.sync_api import expect


def test_the_watch_sees_a_content_security_policy_violation_and_an_uncaught_error(people):
    page = people.open()
    page.goto("/admin/login/")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert people.errors == []

    # Markup a template could carry by mistake: an inline handler, which the CSP refuses.
    with page.expect_console_message(lambda message: "Content Security Policy" in message.text):
        page.evaluate("document.body.insertAdjacentHTML('beforeend', '<img src=\"data:,\" onerror=\"1\">')")
    with page.expect_event("pageerror"):
        page.evaluate("setTimeout(() => { throw new Error('broken page script'); })")

    seen = "\n".join(people.errors)
    assert "Content Security Policy" in seen, seen
    assert "broken page script" in seen, seen
    people.screenshot(page)
    people.errors.clear()  # seen on purpose
