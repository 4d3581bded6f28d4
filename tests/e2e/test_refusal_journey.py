"""Journey 4: a staff user without a role and an outsider are refused
everywhere, each time with a page that says why and where to go."""

import re

from django.urls import reverse
from playwright.sync_api import expect

# The pages a person reaches from the menu, the header and the links people share.
PAGES = [
    reverse("admin:reconciliation_reconciliationrun_changelist"),
    reverse("admin:reconciliation_reconciliationrun_change", args=[1]),
    reverse("admin:reconciliation_violation_changelist"),
    reverse("admin:reconciliation_balancerequest_changelist"),
    reverse("admin:reconciliation_balancerequest_propose"),
    reverse("admin:reconciliation_balancerequest_decide", args=[1]),
    reverse("admin:revassure_freezeevent_changelist"),
    reverse("admin:revassure_freeze_toggle"),
    reverse("admin:revassure_featureflag_changelist"),
    reverse("admin:backfill_datamigration_changelist"),
    reverse("admin:backfill_upload"),
    reverse("admin:backfill_providereventdelivery_changelist"),
    reverse("admin:wallet_lookup") + "?uid=cust-heal-0001",
]
# What the refusal page says: the rule that refused, or the role that is missing.
WHY = re.compile(r"Refused: \w.+\.|Your role does not allow this page or action\.")


def test_a_staff_user_without_a_role_is_told_why_on_every_page(people):
    people.allow_status(403)
    nora = people.sign_in("nora")
    expect(nora.get_by_role("heading", name="You have no role in revassure yet")).to_be_visible()
    expect(nora.get_by_text("Who grants them:")).to_be_visible()

    for url in PAGES:
        response = nora.goto(url)
        assert response.status == 403, url
        expect(nora.get_by_role("heading", name="Access refused", level=1)).to_be_visible()
        expect(nora.locator("#refusal-reason")).to_have_text(WHY)
        expect(nora.locator("#refusal-roles")).to_contain_text("nora, with no role yet")
        expect(nora.get_by_role("link", name="The admin home page")).to_be_visible()
    people.screenshot(nora)


def test_an_outsider_is_refused_at_sign_in_and_sent_there_from_every_page(people):
    oscar = people.open()
    for url in PAGES:
        oscar.goto(url)
        expect(oscar).to_have_url(re.compile(r"/admin/login/\?next="))
        expect(oscar.get_by_role("button", name="Log in")).to_be_visible()

    oscar.get_by_label("Username").fill("oscar")
    oscar.get_by_label("Password").fill(people.site.password)
    oscar.get_by_role("button", name="Log in").click()
    expect(oscar).to_have_url(re.compile(r"/admin/login/"))
    expect(oscar.locator(".errornote")).to_contain_text("staff account")
    people.screenshot(oscar)
