"""The admin's look, as a person checks it: the wallet lookup in every header,
refusals that say why and where to go, the freeze one click from the index,
filters in a bar above the table, and nothing the CSP would block."""

import pytest
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import include, path, reverse

from revassure import freeze
from revassure import urls as project_urls
from revassure.formatting import when
from revassure.models import FreezeEvent
from tests.helpers import csp_refusals

INDEX = "/admin/"
FREEZE_PAGE = "/admin/revassure/freezeevent/toggle/"
MIGRATIONS = "/admin/backfill/datamigration/"


def _refuse(request):
    raise PermissionDenied("this caller may not do that")


class WithARefusingApi:
    """The project's URLs plus an API view that refuses."""

    urlpatterns = [path("api/refuse", _refuse), *project_urls.urlpatterns]
    handler403 = project_urls.handler403


class WithoutWalletPage:
    """The project's URLs as they were before the wallets app: no wallet page."""

    admin_urls = [p for p in admin.site.get_urls() if not str(p.pattern).startswith("wallets/")]
    urlpatterns = [
        *[p for p in project_urls.urlpatterns if str(p.pattern) != "admin/"],
        path("admin/", include((admin_urls, "admin"), namespace="admin")),
    ]
    handler403 = project_urls.handler403


def page(response) -> str:
    return response.content.decode()


@pytest.mark.django_db
def test_every_admin_page_has_the_wallet_lookup_in_its_header(client, gateway, ops):
    lookup = reverse("admin:wallet_lookup")
    client.force_login(ops)
    for url in [INDEX, MIGRATIONS, FREEZE_PAGE, "/admin/backfill/datamigration/upload/", "/admin/auth/user/"]:
        html = page(client.get(url))  # the last one is a refusal: it has the header too
        assert f'<form id="wallet-lookup" role="search" method="get" action="{lookup}"' in html, url
        assert 'name="uid"' in html and '<button type="submit" id="wallet-lookup-go">Go</button>' in html, url


@pytest.mark.django_db
def test_pages_render_without_a_wallet_page_and_offer_no_lookup(client, gateway, ops, settings):
    settings.ROOT_URLCONF = WithoutWalletPage
    client.force_login(ops)
    for url in [INDEX, MIGRATIONS, FREEZE_PAGE]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert 'id="wallet-lookup"' not in page(response), url


@pytest.mark.django_db
def test_there_is_no_view_site_link_that_leads_nowhere(client, reviewer):
    client.force_login(reviewer)
    html = page(client.get(INDEX))
    assert "View site" not in html
    assert client.get("/").status_code == 404  # there is no site behind the admin to view


@pytest.mark.django_db
def test_the_header_says_who_is_signed_in_and_in_which_role(client, reviewer, outsider):
    client.force_login(reviewer)
    html = page(client.get(INDEX))
    assert 'id="signed-in-user">alice</strong>' in html
    assert '<span class="role-tag">finance-reviewer</span>' in html
    client.force_login(outsider)
    assert '<span class="role-tag role-none">no role</span>' in page(client.get(INDEX))


@pytest.mark.django_db
def test_the_navigation_starts_collapsed_by_our_script_and_phones_get_a_menu(client, reviewer):
    client.force_login(reviewer)
    html = page(client.get(INDEX))
    assert '<script src="/static/revassure/nav.js"></script>' in html
    assert '<details id="nav-menu">' in html and "Violations</a>" in html


@pytest.mark.django_db
def test_filters_are_a_closed_bar_above_the_table_that_names_the_filters_in_use(client, gateway, ops):
    client.force_login(ops)
    html = page(client.get(MIGRATIONS))
    assert '<details id="changelist-filter-bar">' in html  # closed: nothing filtered
    assert '<span class="filters-in-use quiet">none</span>' in html
    html = page(client.get(MIGRATIONS, {"status__exact": "completed"}))
    assert '<details id="changelist-filter-bar">' in html  # closed too: the table comes first to the eye
    assert "Status: Completed" in html
    assert "Clear all filters" in html
    # The filters come before the table, not in a sidebar after it.
    assert html.index('id="changelist-filter"') < html.index('id="changelist-form"')


@pytest.mark.django_db
def test_on_a_phone_every_cell_says_which_column_it_is(client, gateway, ops):
    freeze.freeze(actor=ops, reason="cutover", gateway=gateway)
    client.force_login(ops)
    html = page(client.get("/admin/revassure/freezeevent/"))
    assert '<td data-label="Change" class="field-change">Froze</td>' in html
    assert '<td data-label="Reason" class="field-reason">cutover</td>' in html


@pytest.mark.django_db
def test_django_s_own_date_displays_use_the_one_format_with_the_zone(client, gateway, ops):
    freeze.freeze(actor=ops, reason="cutover", gateway=gateway)
    event = FreezeEvent.objects.get()
    client.force_login(ops)
    html = page(client.get("/admin/revassure/freezeevent/"))
    assert f'/change/">{when(event.created_at)}</a></th>' in html
    assert "a.m." not in html and "p.m." not in html


# -- refusals -----------------------------------------------------------------


@pytest.mark.django_db
def test_a_refused_page_says_why_and_where_to_go(client, reviewer):
    client.force_login(reviewer)
    response = client.get(FREEZE_PAGE)
    html = page(response)
    assert response.status_code == 403
    assert '<h1 id="refusal-title">Access refused</h1>' in html
    assert "Refused: only ops freeze and unfreeze manual balance changes." in html
    assert "with the role finance-reviewer" in html
    assert "Where to go" in html and 'href="/admin/">The admin home page</a>' in html
    assert "granted by ops or a superuser" in html
    # It is an admin page like the others: our stylesheet, the site's header.
    assert "/static/revassure/admin.css" in html and 'id="site-name"' in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role, url",
    [
        ("outsider", MIGRATIONS),
        ("outsider", "/admin/reconciliation/violation/"),
        ("outsider", FREEZE_PAGE),
        ("reviewer", "/admin/backfill/datamigration/upload/"),
        ("approver", FREEZE_PAGE),
        ("reviewer", "/admin/auth/user/"),
        ("ops", "/admin/auth/group/"),
    ],
)
def test_every_role_boundary_is_a_styled_page_not_a_bare_403(client, request, role, url):
    client.force_login(request.getfixturevalue(role))
    response = client.get(url)
    assert response.status_code == 403
    html = page(response)
    assert 'id="refusal"' in html and "Where to go" in html
    assert "403 Forbidden" not in html


@pytest.mark.django_db
def test_a_staff_user_without_a_role_is_told_so_on_the_index(client, outsider):
    client.force_login(outsider)
    response = client.get(INDEX)
    html = page(response)
    assert response.status_code == 200
    assert "You have no role in revassure yet" in html
    assert "ops or a superuser" in html and "finance-reviewer" in html
    assert "permission to view or edit anything" not in html
    assert 'id="freeze-panel"' not in html


@pytest.mark.django_db
def test_a_refused_page_for_an_outsider_says_they_have_no_role(client, outsider):
    client.force_login(outsider)
    html = page(client.get(MIGRATIONS))
    assert "You are signed in as <strong>charlie</strong>, with no role yet." in html


@pytest.mark.django_db
def test_machine_apis_keep_answering_json_when_refused(client, settings):
    settings.ROOT_URLCONF = WithARefusingApi
    response = client.get("/api/refuse")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "this caller may not do that"}


@pytest.mark.django_db
def test_a_refused_sign_in_looks_like_every_other_refusal(client):
    response = client.get("/sso/refused/")
    html = page(response)
    assert response.status_code == 403
    assert '<h1 id="refusal-title">Sign-in refused</h1>' in html
    assert 'id="refusal"' in html and "/static/revassure/admin.css" in html
    assert "sign in again" in html


@pytest.mark.django_db
def test_a_form_sent_without_its_security_token_gets_a_page_that_says_so(ops):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(ops)
    response = browser.post(FREEZE_PAGE, {"state": "freeze", "reason": "cutover"})
    html = page(response)
    assert response.status_code == 403
    assert "security token was missing or old" in html and 'id="refusal"' in html
    assert freeze.current() is None


# -- the freeze, one click from the index --------------------------------------


@pytest.mark.django_db
def test_ops_freeze_from_the_index_with_a_reason_and_come_back_to_it(client, gateway, ops):
    client.force_login(ops)
    html = page(client.get(INDEX))
    assert '<span id="freeze-state" class="ra-state">Not frozen</span>' in html
    assert 'name="state" value="freeze"' in html
    assert '<textarea id="freeze-reason" name="reason" rows="2" required' in html
    assert ">Freeze manual changes</button>" in html

    response = client.post(
        FREEZE_PAGE, {"state": "freeze", "reason": "cutover to points v2", "next": INDEX}, follow=True
    )

    assert response.redirect_chain[-1][0] == INDEX
    html = page(response)
    assert "Manual balance changes are frozen." in html
    assert '<span id="freeze-state" class="ra-state ra-frozen">Frozen</span>' in html
    assert "by <strong>olga</strong>: cutover to points v2" in html
    assert 'id="freeze-banner"' in html
    assert 'name="state" value="unfreeze"' in html and ">Unfreeze manual changes</button>" in html
    assert gateway.get_config("adjustments")["frozen"] is True


@pytest.mark.django_db
def test_freezing_from_the_index_without_a_reason_is_refused_with_the_form(client, gateway, ops):
    client.force_login(ops)
    response = client.post(FREEZE_PAGE, {"state": "freeze", "reason": "  ", "next": INDEX})
    assert response.status_code == 200
    assert "This field is required." in page(response)
    assert freeze.current() is None


@pytest.mark.django_db
def test_the_freeze_form_returns_only_to_pages_of_this_site(client, gateway, ops):
    client.force_login(ops)
    response = client.post(
        FREEZE_PAGE, {"state": "freeze", "reason": "cutover", "next": "https://evil.example/"}
    )
    assert response["Location"] == "/admin/revassure/freezeevent/"


@pytest.mark.django_db
def test_the_freeze_page_says_what_holds_now(client, gateway, ops):
    client.force_login(ops)
    assert "Not frozen (never frozen)" in page(client.get(FREEZE_PAGE))
    freeze.freeze(actor=ops, reason="cutover", gateway=gateway)
    event = FreezeEvent.objects.get()
    html = page(client.get(FREEZE_PAGE))
    assert f"Frozen {when(event.created_at)} by olga: cutover" in html
    assert 'name="state" value="unfreeze"' in html


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["reviewer", "approver"])
def test_finance_see_the_freeze_on_the_index_but_no_form(client, gateway, ops, request, role):
    freeze.freeze(actor=ops, reason="cutover", gateway=gateway)
    event = FreezeEvent.objects.get()
    client.force_login(request.getfixturevalue(role))
    html = page(client.get(INDEX))
    assert '<span id="freeze-state" class="ra-state ra-frozen">Frozen</span>' in html
    assert f"Frozen {when(event.created_at)} by <strong>olga</strong>: cutover" in html
    assert 'id="freeze-form"' not in html
    assert "only ops freeze and unfreeze" in html


# -- the CSP ------------------------------------------------------------------


@pytest.mark.django_db
def test_our_pages_need_nothing_the_csp_refuses(client, gateway, ops, outsider):
    freeze.freeze(actor=ops, reason="cutover", gateway=gateway)
    client.force_login(ops)
    urls = [
        INDEX,
        MIGRATIONS,
        MIGRATIONS + "?status__exact=completed",
        "/admin/backfill/datamigration/upload/",
        "/admin/backfill/providereventdelivery/",
        "/admin/revassure/freezeevent/",
        FREEZE_PAGE,
        "/admin/auth/group/",  # a refusal
    ]
    for url in urls:
        response = client.get(url)
        assert csp_refusals(page(response)) == [], url
        policy = response["Content-Security-Policy"]
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    client.force_login(outsider)
    assert csp_refusals(page(client.get(INDEX))) == []
