"""Journey 1: from the admin index to a healed wallet, with a reviewer, an
approver and the real worker."""

import re

from playwright.sync_api import expect

HEALED = "cust-heal-0001"  # 12,345 points over a ledger of 12,300
PROPOSED_BECAUSE = "Customer asked about a balance 45 points over the ledger."
APPROVED_BECAUSE = "Ledger checked line by line: the wallet holds 45 points too many."


def field(page, label):
    """A read-only row of an admin page, found by its label."""
    return page.locator(".form-row").filter(has=page.get_by_text(f"{label}:", exact=True))


def test_a_reviewer_finds_drift_proposes_a_heal_and_the_worker_applies_it_once_approved(people, site):
    run = site.first_run
    reviewer = people.sign_in("rita")
    # The index is the revenue-assurance dashboard: the last full run, in numbers.
    last_run = reviewer.get_by_role("region", name="Last full run")
    expect(last_run).to_contain_text(f"{run['wallets_checked']:,} wallets")
    expect(last_run).to_contain_text(f"Total drift {run['total_abs_drift']:,} points")
    people.fits_the_screen(reviewer)
    last_run.get_by_role("link", name=f"Run {run['run_id']}", exact=True).click()
    expect(field(reviewer, "Wallets")).to_contain_text(f"{run['wallets_checked']:,}")
    expect(field(reviewer, "Drift (absolute)")).to_contain_text(f"{run['total_abs_drift']:,}")

    reviewer.get_by_role("link", name="Violations", exact=True).click()
    # The filters wait behind their bar (closed on every list, in use or not).
    reviewer.get_by_text("Filters", exact=True).click()
    reviewer.get_by_role("link", name="Drift", exact=True).click()
    reviewer.get_by_text("Filters", exact=True).click()
    reviewer.get_by_role("link", name="wallet above ledger").click()
    people.fits_the_screen(reviewer)
    row = reviewer.get_by_role("row").filter(has_text=HEALED)
    expect(row).to_contain_text("+45")
    expect(row).to_contain_text("12,345")
    row.get_by_role("checkbox").check()
    reviewer.get_by_role("combobox", name="Action").select_option(
        label="Propose heal for the selected violations"
    )
    reviewer.get_by_title("Run the selected action").click()

    expect(reviewer.get_by_role("heading", name=re.compile("Propose heals for 1 violation"))).to_be_visible()
    expect(reviewer.get_by_role("row").filter(has_text=HEALED)).to_contain_text("+45")
    reviewer.get_by_label("Strategy").select_option(value="rebalance")
    reviewer.get_by_label("Reason").fill(PROPOSED_BECAUSE)
    reviewer.get_by_role("button", name="Propose heals").click()
    expect(reviewer.get_by_text("1 heal request(s) proposed")).to_be_visible()

    approver = people.sign_in("abe")
    approver.get_by_role("region", name=re.compile("Waiting for you")).get_by_role(
        "link", name="Balance requests to decide"
    ).click()
    people.fits_the_screen(approver)
    approver.get_by_role("row").filter(has_text=HEALED).get_by_role("link", name="Decide").click()
    heading = approver.get_by_role("heading", name=re.compile(r"Decide request \d+"))
    expect(heading).to_be_visible()
    request_id = re.search(r"\d+", heading.inner_text()).group()
    expect(approver.locator("#live-points")).to_have_text("12,345")
    expect(approver.locator("#live-ledger-sum")).to_have_text("12,300")
    approver.get_by_label("Reason").fill(APPROVED_BECAUSE)
    approver.get_by_role("button", name="Approve").click()
    expect(approver.get_by_text(f"Request {request_id} approved")).to_be_visible()

    # The worker (the real qcluster) applies it; the request's page says so, and
    # its trail keeps both reasons.
    approver.goto(f"/admin/reconciliation/balancerequest/{request_id}/change/")
    people.reload_until(approver, field(approver, "State"), "Applied")
    trail = approver.locator("table.request-trail")

    def by(who: str):  # the row whose "who" cell is exactly that user (a correlation id may hold "abe")
        return trail.get_by_role("row").filter(has=approver.get_by_role("cell", name=who, exact=True))

    expect(by("abe")).to_contain_text(APPROVED_BECAUSE)
    expect(by("rita")).to_contain_text(PROPOSED_BECAUSE)

    # The reviewer looks the wallet up from the header: healed, and the
    # violation says so.
    lookup = reviewer.get_by_role("search", name="Wallet lookup")
    lookup.get_by_role("searchbox").fill(HEALED)
    lookup.get_by_role("button", name="Go").click()
    expect(reviewer.locator("#wallet-balance")).to_have_text("12,300")
    people.fits_the_screen(reviewer)
    expect(reviewer.locator("#wallet-drift")).to_have_text("In balance")
    expect(
        reviewer.locator("#wallet-requests").get_by_role("row").filter(has_text=f"#{request_id}")
    ).to_contain_text("Applied")
    violation = (
        reviewer.locator("#wallet-violations").get_by_role("row").filter(has_text=f"Run {run['run_id']}")
    )
    expect(violation).to_contain_text("+45")
    violation.get_by_role("link", name="Violation").click()
    expect(field(reviewer, "Heal requests").get_by_role("link")).to_have_text(f"Heal #{request_id} applied")
    expect(field(reviewer, "Heal now")).to_contain_text(f"Healed already by heal #{request_id}")
    people.screenshot(reviewer)
