"""Journey: addresses that go wrong show our pages (issue 25). A mistyped
address answers 404 with the product's page and a way back; a record that does
not exist the same; a list filter with a value it cannot use (letters where a
run id goes, a number past any id) shows the list without it and says why,
never a server error."""

import re

from playwright.sync_api import expect

NOT_FOUND = [
    "/admin/reconciliation/reconcilationrun/",  # mistyped
    "/reports/latest",  # outside the admin
    "/admin/cutover/cutover/abc/change/",
]
BAD_FILTERS = [
    "/admin/reconciliation/violation/?run__id__exact=abc",
    "/admin/settlement/settlementrow/?run=99999999999999999999999",
]


def test_a_bad_address_and_a_bad_filter_show_our_pages(people):
    people.allow_status(404)
    reviewer = people.sign_in("rita")
    for url in NOT_FOUND:
        response = reviewer.goto(url)
        assert response.status == 404, (url, response.status)
        expect(reviewer.get_by_role("heading", name="Nothing here", level=1)).to_be_visible()
        expect(reviewer.locator("#not-found")).to_contain_text(url.split("?")[0])
        expect(reviewer.locator("#not-found-next").get_by_role("link", name="The dashboard")).to_be_visible()
        people.fits_the_screen(reviewer)
    people.screenshot(reviewer, "-404")
    reviewer.locator("#not-found-next").get_by_role("link", name="The dashboard").click()
    expect(reviewer).to_have_url(re.compile(r"/admin/$"))

    for url in BAD_FILTERS:
        response = reviewer.goto(url)
        assert response.status == 200, (url, response.status)  # after the redirect, the list itself
        expect(reviewer).to_have_url(re.compile(r"\?e=1$"))
        expect(reviewer.locator(".messagelist .error")).to_contain_text(
            "The filters in the address could not be used"
        )
        expect(reviewer.locator(".messagelist .error")).to_contain_text("the list is shown without them")
        expect(reviewer.locator("#changelist")).to_be_visible()
        people.fits_the_screen(reviewer)
    people.screenshot(reviewer)
