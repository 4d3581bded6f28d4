"""Journey: the breaks list and the settlement rows list read at 1280 px without
sideways scrolling, the explanation of each row readable (wrapped, never cut),
and at 390 px with the filters behind a button; money and points as finance
reads them on the way."""

import csv
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from settlement.statement import COLUMNS

# Identifiers as long as the statement allows (128): the columns that pushed the table past 1920 px.
LONG_ID = ("re_" + "3NrefundOfAPaymentWithALongProviderReference_" * 3)[:128]


@pytest.fixture(scope="module")
def settlement_run(site, tmp_path_factory):
    """A statement whose payments the ledger never saw: every row a break, some refunds with
    the longest references a statement allows."""
    path = tmp_path_factory.mktemp("statement") / "paynow.csv"
    settled = datetime(2026, 11, 25, 9, 0, tzinfo=UTC).isoformat()
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for n in range(12):
            writer.writerow(
                [
                    "refund" if n % 3 == 1 else "payment",
                    f"pay_layout_{n:04d}",
                    f"{LONG_ID[:-4]}{n:04d}" if n % 3 == 1 else "",
                    f"cust-unknown-{n:04d}",
                    1570 + n,
                    "12477.4" if n == 0 else "24",
                    "EUR" if n % 2 else "USD",
                    "settled",
                    settled,
                ]
            )
    site.manage("reconcile_settlement", str(path))


def key_columns_are_seen(page, columns: list[str]) -> None:
    """Each key column's cells lie inside the window (nothing to scroll to)."""
    width = page.viewport_size["width"]
    for column in columns:
        cells = page.locator(f"#result_list .field-{column}")
        assert cells.count() > 0, column
        box = cells.first.bounding_box()
        assert box is not None and box["width"] > 0, column
        assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (column, box, width)


def test_the_breaks_and_settlement_rows_lists_fit_1280_and_390_px(people, settlement_run):
    desk = people.sign_in("rita")
    desk.goto("/admin/reconciliation/break/?status=not_closed")
    expect(desk.locator("#changelist-filter-bar")).not_to_have_attribute("open", "")
    people.fits_the_screen(desk)
    key_columns_are_seen(desk, ["uid", "status_display", "severity_display", "age_display", "delta_display"])
    # Sorted by severity, the worst first: a click on the column's header (twice: descending).
    desk.locator("#result_list thead th.column-severity_display a").first.click()
    desk.locator("#result_list thead th.column-severity_display a.toggle").click()
    people.fits_the_screen(desk)

    desk.goto("/admin/settlement/settlementrow/?outcome=breaks")
    people.fits_the_screen(desk)
    key_columns_are_seen(
        desk, ["outcome_display", "payment_id", "points_display", "amount_display", "detail"]
    )
    first = desk.locator("#result_list tbody tr").filter(has_text="pay_layout_0000")
    expect(first.locator(".field-amount_display")).to_have_text("12,477.40 USD")
    expect(first.locator(".field-points_display")).to_have_text("1,570")
    # The explanation is read whole: wrapped inside its cell, not cut by the window.
    detail = first.locator(".field-detail")
    assert detail.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
    people.screenshot(desk, "-rows-1280")

    desk.locator("#result_list tbody tr").filter(has_text="pay_layout_0000").locator(
        "th a, td a"
    ).first.click()
    expect(desk.locator("#content")).to_contain_text("12,477.40 USD")
    desk.goto("/admin/settlement/settlementrun/")
    desk.locator("#result_list tbody tr").first.locator("th a").first.click()
    # 12,477.40 + 5 × 24.00 in USD, 6 × 24.00 in EUR; 1,570 + … + 1,581 points.
    expect(desk.locator("#stake-total")).to_contain_text("144.00 EUR, 12,597.40 USD")
    expect(desk.locator("#stake-total")).to_contain_text("18,906")
    people.fits_the_screen(desk)

    phone = people.sign_in("rita", phone=True)
    for url in [
        "/admin/reconciliation/break/?status=not_closed",
        "/admin/settlement/settlementrow/?outcome=breaks",
    ]:
        phone.goto(url)
        people.fits_the_screen(phone)
        filters = phone.locator("#changelist-filter .filter-groups")
        expect(filters).to_be_hidden()  # behind the button
        phone.locator("#changelist-filter-bar > summary").click()
        expect(filters).to_be_visible()
        people.fits_the_screen(phone)
    people.screenshot(phone)
