"""Journey: a malformed break has a path that ends (issue 25). A reviewer
opens the malformed break, is told a heal would only hide the bad entry, and
proposes a correction on the break's page: the entry read as 120, the ledger
going 430 → 550 while the customer's balance stays. An approver decides it
seeing the entry it supersedes, the break and its cause; the real worker
appends the correcting entry; the malformed entry stays in the ledger,
superseded; a run of the wallet finds it clean and closes the break as
healed by the correction."""

import json
import re

from playwright.sync_api import expect

WALLET = "cust-fix-0007"  # 550 points over a purchase of 430 and an amount of "120"
PROPOSED_BECAUSE = "The app wrote a purchase of 120 points as text; the receipt says 120."
APPROVED_BECAUSE = "Receipt checked: 120 points, paid on the same day."


def test_a_malformed_break_is_corrected_through_maker_checker_and_closes_healed(people, site):
    reviewer = people.sign_in("rita")
    reviewer.goto("/admin/reconciliation/break/?status=not_closed&kind__exact=malformed")
    reviewer.get_by_role("link", name=WALLET, exact=True).click()
    page_url = reviewer.url
    # The probable cause comes from the worker after the run.
    people.reload_until(
        reviewer,
        reviewer.locator(".form-row.field-cause_text_display"),
        "read as a number it explains the whole +120",
    )
    expect(reviewer.locator("#break-refused")).to_contain_text(
        "Propose a heal: not now, malformed, cannot be healed"
    )

    reviewer.locator("#break-propose-correction").click()
    correct = reviewer.locator("#break-correct")
    expect(correct).to_contain_text("Now: wallet 550 points, ledger 430, delta +120.")
    expect(correct.locator("label").filter(has_text="e001")).to_contain_text(
        'e001: a string "120", read as +120: the customer\'s balance stays 550 points; '
        "the ledger goes 430 → 550 (an entry of +120); the difference of +120 is gone"
    )
    expect(correct.get_by_label("Amount it should have been")).to_have_value("120")
    people.fits_the_screen(reviewer)
    correct.get_by_label("Reason").fill(PROPOSED_BECAUSE)
    people.screenshot(reviewer, "-propose")
    correct.get_by_role("button", name="Propose correction").click()
    proposed = reviewer.get_by_text(
        re.compile(
            r"Correction #\d+ proposed \(entry e001 to count \+120 points\): another person approves it\."
        )
    )
    expect(proposed).to_be_visible()
    request_id = re.search(r"Correction #(\d+)", proposed.inner_text()).group(1)
    assert reviewer.url == page_url
    expect(reviewer.locator("#break-heals")).to_contain_text(f"Correction #{request_id} proposed")
    expect(reviewer.locator("#break-refused")).to_contain_text(
        f"Propose a correction: not now, its wallet already has correction #{request_id} (proposed)"
    )

    approver = people.sign_in("abe")
    approver.goto(f"/admin/reconciliation/balancerequest/{request_id}/decide/")
    expect(approver.locator(".decide-page")).to_contain_text(
        'entry e001, which holds a string "120": a new entry of +120 points supersedes it'
    )
    expect(approver.locator("#decide-effect")).to_contain_text(
        "the customer's balance stays 550 points; the ledger goes 430 → 550 (an entry of +120)"
    )
    found = approver.locator("#decide-break")
    expect(found.get_by_role("link", name=re.compile(f"Break \\d+ of {WALLET}"))).to_be_visible()
    expect(found).to_contain_text("Entry e001: amount is a string")
    expect(found.locator("#cause-evidence")).to_be_visible()
    people.fits_the_screen(approver)
    people.screenshot(approver, "-decide")
    approver.get_by_label("Reason").fill(APPROVED_BECAUSE)
    approver.get_by_role("button", name="Approve").click()
    expect(approver.get_by_text(f"Request {request_id} approved")).to_be_visible()

    # The worker appends the correction; the malformed entry stays, superseded by it.
    reviewer.goto(page_url)
    people.reload_until(reviewer, reviewer.locator("#break-heals"), f"Correction #{request_id} applied")
    reviewer.locator("#break-wallet-page").click()
    entry = f"revassure-correction-{request_id}"
    expect(reviewer.locator('tr.ledger-entry[data-entry-id="e001"]')).to_contain_text(
        f"(superseded by {entry})"
    )
    correction = reviewer.locator(f'tr.ledger-entry[data-entry-id="{entry}"]')
    expect(correction).to_contain_text("+120")
    expect(correction).to_contain_text(f"Correction: request #{request_id}")
    expect(reviewer.locator("#wallet-malformed")).to_have_count(0)

    # A run of the wallet finds it clean: the break closes, healed by the correction.
    run = json.loads(site.manage("reconcile", "--uid", WALLET, "--json").strip().splitlines()[-1])
    assert (run["status"], run["violations_count"]) == ("completed", 0), run
    reviewer.goto(page_url)
    expect(reviewer.locator(".form-row.field-status_display")).to_contain_text("Closed")
    expect(reviewer.locator(".form-row.field-resolution_display")).to_contain_text(
        "healed by a heal or correction of ours"
    )
    expect(reviewer.locator("#break-heal")).to_have_text(f"Correction #{request_id}")
    people.fits_the_screen(reviewer)
    people.screenshot(reviewer)
