"""Journey: the inbox. A reviewer proposes an adjustment and does not find it
waiting for herself; the approver sees the count in the header, opens the
inbox from it, decides the request from there, and the count goes down."""

import re

from playwright.sync_api import expect

WALLET = "cust-adjust-0003"  # 2,500 points, in balance
BECAUSE = "Goodwill for a parcel lost in transit."


def count(page) -> int:
    return int(page.locator("#inbox-count").inner_text().replace(",", ""))


def test_an_approver_opens_the_inbox_from_the_header_and_decides_a_request_from_it(people):
    reviewer = people.sign_in("rita")
    reviewer.goto("/admin/reconciliation/balancerequest/propose-adjustment/")
    reviewer.get_by_label("Wallet uid").fill(WALLET)
    reviewer.get_by_label("Amount").fill("75")
    reviewer.get_by_label("Reason code").select_option(label="goodwill gesture")
    reviewer.get_by_label(re.compile(r"^Reason:?$")).fill(BECAUSE)
    reviewer.get_by_role("button", name="Propose").click()
    expect(
        reviewer.get_by_text(re.compile(rf"Adjustment \d+ of \+75 points for {WALLET} proposed"))
    ).to_be_visible()

    # Her own proposal waits for someone else, not for her.
    reviewer.locator("#inbox-link").click()
    expect(reviewer.get_by_role("heading", name="Waiting for you")).to_be_visible()
    expect(reviewer.get_by_text(BECAUSE)).to_have_count(0)
    expect(reviewer.get_by_role("region", name=re.compile("Balance requests to decide"))).to_have_count(0)
    people.fits_the_screen(reviewer)

    approver = people.sign_in("abe")
    before = count(approver)
    assert before >= 1
    tile = approver.get_by_role("region", name=re.compile("Waiting for you"))
    expect(tile).to_contain_text(re.compile(r"Balance requests to decide: \d+"))
    approver.locator("#inbox-link").click()
    expect(approver.get_by_role("heading", name="Waiting for you")).to_be_visible()
    people.fits_the_screen(approver)
    requests = approver.get_by_role("region", name=re.compile("Balance requests to decide"))
    row = requests.get_by_role("row").filter(has_text=BECAUSE)
    expect(row).to_contain_text(f"wallet {WALLET}: +75 points")
    expect(row).to_contain_text("Proposed by rita")
    expect(row).to_contain_text(re.compile(r"less than a minute|\d+ minutes?"))  # how long it has waited
    row.get_by_role("link", name="Decide").click()

    heading = approver.get_by_role("heading", name=re.compile(r"Decide request \d+"))
    expect(heading).to_be_visible()
    request_id = re.search(r"\d+", heading.inner_text()).group()
    approver.get_by_label("Reason").fill("Within the monthly goodwill budget.")
    approver.get_by_role("button", name="Approve").click()
    expect(approver.get_by_text(f"Request {request_id} approved")).to_be_visible()
    assert count(approver) == before - 1

    approver.locator("#inbox-link").click()
    expect(approver.get_by_text(BECAUSE)).to_have_count(0)
    people.fits_the_screen(approver)

    # On a phone the inbox is cards, the count still in the header.
    phone = people.sign_in("abe", phone=True)
    phone.locator("#inbox-link").click()
    expect(phone.get_by_role("heading", name="Waiting for you")).to_be_visible()
    people.fits_the_screen(phone)
    people.screenshot(approver)
