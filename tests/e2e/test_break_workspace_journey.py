"""Journey: the break's page is the workspace (issue 25). A reviewer opens a
break from the filtered list, takes it, notes it and proposes a heal, all on
the break's page, seeing what the heal does to the customer's balance; the
list's filters are still there when she goes back. An approver decides the
heal on a page that shows the break, its probable cause and its evidence
beside the numbers, and the worker applies it."""

import re

from playwright.sync_api import expect

WALLET = "cust-work-0006"  # 624 points over a ledger of 209
FILTERS = "status=not_closed&owner=nobody&kind__exact=drift"
NOTE = "Customer called: the balance in the app looks too high."
PROPOSED_BECAUSE = "No entry explains the 415 extra points: the wallet goes back to its ledger."
APPROVED_BECAUSE = "Checked the ledger: one purchase of 209, nothing else."


def test_a_reviewer_works_a_break_in_place_and_an_approver_decides_seeing_its_cause(people, site):
    reviewer = people.sign_in("rita")
    reviewer.goto(f"/admin/reconciliation/break/?{FILTERS}")
    reviewer.get_by_role("link", name=WALLET, exact=True).click()
    expect(reviewer).to_have_url(re.compile(r"_changelist_filters="))
    # The probable cause comes from the worker after the run: reload until it is in.
    cause = reviewer.locator(".form-row.field-cause_display")
    for _ in range(60):
        if "not computed yet" not in cause.inner_text():
            break
        reviewer.wait_for_timeout(1000)
        reviewer.reload()
    cause_label = cause.locator(".readonly").inner_text().strip()
    assert cause_label and cause_label != "not computed yet"
    people.fits_the_screen(reviewer)

    # Take: back on the same page, the list's filters kept in its address.
    page_url = reviewer.url
    reviewer.locator("#break-take").click()
    expect(reviewer.get_by_text(f"({WALLET}) taken: it is yours.")).to_be_visible()
    assert reviewer.url == page_url
    expect(reviewer.locator("#break-take")).to_have_count(0)
    expect(reviewer.locator("#break-refused")).to_contain_text("Take: not now, it is yours already.")

    # A note, in place.
    reviewer.get_by_label("Note").fill(NOTE)
    reviewer.get_by_role("button", name="Add note").click()
    expect(reviewer.get_by_text("Note added.")).to_be_visible()
    assert reviewer.url == page_url
    expect(reviewer.locator("#break-notes")).to_contain_text(NOTE)

    # A heal, in place, each way saying what it does to the customer's balance.
    reviewer.locator("#break-propose-heal").click()
    heal = reviewer.locator("#break-heal")
    expect(heal).to_contain_text("Now: wallet 624 points, ledger 209, delta +415.")
    rebalance = heal.get_by_label(re.compile(r"Rebalance"))
    expect(heal.locator("label").filter(has_text=re.compile(r"^\s*Rebalance"))).to_contain_text(
        "the customer's balance goes 624 → 209 points"
    )
    expect(heal).to_contain_text("the customer's balance stays 624 points; the ledger goes 209 → 624")
    people.fits_the_screen(reviewer)
    rebalance.check()
    heal.get_by_label("Reason").fill(PROPOSED_BECAUSE)
    heal.get_by_role("button", name="Propose heal").click()
    proposed = reviewer.get_by_text(re.compile(r"Heal #\d+ proposed .*another person approves it\."))
    expect(proposed).to_be_visible()
    request_id = re.search(r"Heal #(\d+)", proposed.inner_text()).group(1)
    assert reviewer.url == page_url
    expect(reviewer.locator("#break-heals")).to_contain_text(f"Heal #{request_id} proposed")
    expect(reviewer.locator("#break-refused")).to_contain_text(f"its wallet already has heal #{request_id}")

    # Back to the list: its filters are still there, and the break, hers now, is not in it.
    reviewer.locator(".breadcrumbs").get_by_role("link", name="Breaks").click()
    for value in FILTERS.split("&"):
        assert value in reviewer.url, reviewer.url
    expect(reviewer.locator("#changelist")).to_be_visible()
    expect(reviewer.get_by_role("link", name=WALLET, exact=True)).to_have_count(0)

    # The approver decides with the break, its cause and its evidence beside the numbers.
    approver = people.sign_in("abe")
    approver.goto(f"/admin/reconciliation/balancerequest/{request_id}/decide/")
    expect(approver.locator("#decide-effect")).to_contain_text("the customer's balance goes 624 → 209 points")
    found = approver.locator("#decide-break")
    expect(found.get_by_role("heading", name="The break: what was found, and why")).to_be_visible()
    expect(found.get_by_role("link", name=re.compile(f"Break \\d+ of {WALLET}"))).to_be_visible()
    expect(found).to_contain_text(cause_label)
    expect(found).to_contain_text("+415")
    expect(found.locator("#cause-evidence")).to_be_visible()
    expect(approver.locator("#live-points")).to_have_text("624")
    people.fits_the_screen(approver)
    people.screenshot(approver, "-decide")
    approver.get_by_label("Reason").fill(APPROVED_BECAUSE)
    approver.get_by_role("button", name="Approve").click()
    expect(approver.get_by_text(f"Request {request_id} approved")).to_be_visible()

    # The worker applies it; the break's page says so.
    reviewer.goto(page_url)
    people.reload_until(reviewer, reviewer.locator("#break-heals"), f"Heal #{request_id} applied")
    people.screenshot(reviewer)
