"""Journey: a reviewer takes a break from the Breaks list, an approver accepts
its difference; the real worker computes its probable cause meanwhile."""

import re
import time

from playwright.sync_api import expect

ACCEPTED_BECAUSE = "Legacy goodwill credit from the 2019 migration; written off at the monthly close."


def test_a_reviewer_takes_a_break_and_an_approver_accepts_its_difference(people, site):
    reviewer = people.sign_in("rita")
    reviewer.goto("/admin/reconciliation/break/?status=not_closed&owner=nobody&kind__exact=drift")
    people.fits_the_screen(reviewer)
    # A demo wallet's break (the named cust- wallets are other journeys' to work on).
    row = reviewer.locator("#result_list tbody tr").filter(has_not_text="cust-").first
    uid = row.locator("td.field-uid, th.field-uid").inner_text().strip()
    row.get_by_role("link", name=uid).click()

    expect(reviewer.locator("#break-chart")).to_be_visible()
    expect(reviewer.locator("#break-sightings")).to_contain_text(f"Run {site.first_run['run_id']}")
    # The probable cause comes from the worker's task after the run: reload until it is in.
    cause = reviewer.locator(".form-row.field-cause_display")
    deadline = time.monotonic() + 60
    while "not computed yet" in cause.inner_text():
        assert time.monotonic() < deadline, "the probable cause was never computed"
        time.sleep(1)
        reviewer.reload()
    expect(reviewer.locator(".form-row.field-cause_text_display")).not_to_be_empty()
    people.fits_the_screen(reviewer)

    reviewer.locator("#break-take").click()
    expect(reviewer.get_by_text(f"({uid}) taken: it is yours.")).to_be_visible()
    reviewer.goto("/admin/reconciliation/break/?owner=mine")
    expect(reviewer.locator("#result_list")).to_contain_text(uid)
    expect(reviewer.locator("#result_list")).to_contain_text("Acknowledged")

    approver = people.sign_in("abe")
    approver.goto(f"/admin/reconciliation/break/?q={uid}")
    approver.get_by_role("link", name=uid).first.click()
    expect(approver.locator("#break-take")).to_have_count(0)  # approvers do not work breaks
    approver.locator("#break-accept").click()  # to the form on the same page
    accept = approver.locator("#break-accept-section")
    expect(accept.get_by_role("heading", name=re.compile(r"Accept the difference of [+−]"))).to_be_visible()
    accept.get_by_label("Reason").fill(ACCEPTED_BECAUSE)
    accept.get_by_role("button", name="Accept difference").click()
    expect(approver.get_by_text(re.compile(r"Break \d+ accepted and closed\."))).to_be_visible()

    approver.goto(f"/admin/reconciliation/break/?q={uid}")
    approver.get_by_role("link", name=uid).first.click()
    expect(approver.locator(".form-row.field-accepted_display")).to_contain_text(ACCEPTED_BECAUSE)
    # The list's narrow-screen rule hides its columns, not the page's fields of the same names.
    expect(approver.locator(".form-row.field-resolution_display")).to_be_visible()
    expect(approver.locator(".form-row.field-kind_display")).to_contain_text("Drift")
    expect(approver.locator("#break-notes")).to_contain_text("Taken by rita")
    people.fits_the_screen(approver)
    people.screenshot(approver)
