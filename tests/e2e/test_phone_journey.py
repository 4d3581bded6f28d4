"""Journey 5: on a phone (390 px), the approver decides a request from the queue."""

import re

from playwright.sync_api import expect

WALLET = "cust-phone-0002"  # 800 points, 200 below its ledger of 1,000


def test_an_approver_decides_a_request_from_the_queue_on_a_phone(people):
    reviewer = people.sign_in("rita")
    reviewer.goto(f"/admin/wallets/wallet/?uid={WALLET}")
    expect(reviewer.locator("#wallet-drift")).to_contain_text("−200")
    reviewer.get_by_role("button", name=re.compile("Propose a heal")).click()
    reviewer.get_by_label("Strategy").select_option(value="post_adjustment")
    reviewer.get_by_label("Reason").fill("Refund entry posted twice by the old points service.")
    reviewer.get_by_role("button", name="Propose heals").click()
    expect(reviewer.get_by_text("1 heal request(s) proposed")).to_be_visible()

    phone = people.sign_in("abe", phone=True)
    people.fits_the_screen(phone)
    phone.get_by_text("Menu", exact=True).click()
    phone.get_by_role("navigation", name="Menu").get_by_role("link", name="Balance requests").click()
    people.fits_the_screen(phone)
    phone.get_by_text("Filters", exact=True).click()
    phone.get_by_role("link", name="awaiting my decision").click()
    people.fits_the_screen(phone)
    phone.get_by_role("row").filter(has_text=WALLET).get_by_role("link", name="Decide").click()

    expect(phone.get_by_role("heading", name=re.compile(r"Decide request \d+"))).to_be_visible()
    expect(phone.locator("#live-drift")).to_contain_text("−200")
    people.fits_the_screen(phone)
    approve = phone.get_by_role("button", name="Approve")
    box = approve.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= phone.viewport_size["width"], box
    phone.get_by_label("Reason").fill("Matches the provider's refund report.")
    approve.click()
    expect(phone.get_by_text(re.compile(r"Request \d+ approved"))).to_be_visible()
    people.fits_the_screen(phone)
    people.screenshot(phone)
