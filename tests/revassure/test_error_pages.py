"""Pages of our own for an address that names nothing and for our own failures."""

import pytest
from django.test import Client
from django.urls import path

from revassure import urls as product_urls

pytestmark = pytest.mark.django_db


def test_an_unknown_address_shows_our_page_with_a_way_back(client, reviewer):
    client.force_login(reviewer)

    response = client.get("/no/such/page/")

    assert response.status_code == 404
    assert "Nothing here" in response.text and "/no/such/page/" in response.text
    assert 'href="/admin/"' in response.text  # the way back
    assert "Signed in as" in response.text  # in the product's look, its header


def test_an_unknown_record_in_the_admin_shows_our_page(client, reviewer):
    client.force_login(reviewer)

    response = client.get("/admin/reconciliation/reconciliationrun/999999/change/", follow=True)

    assert response.status_code in (200, 404)
    # Django's admin redirects a missing object to its list with a message; a
    # missing page under /admin/ is our 404.
    missing = client.get("/admin/no-such-app/")
    assert missing.status_code == 404 and "Nothing here" in missing.text


def test_the_machine_apis_answer_json_not_a_page():
    response = Client().get("/api/no-such-endpoint")

    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def boom(request):
    raise RuntimeError("the test broke this view")


urlpatterns = [
    *product_urls.urlpatterns,
    path("boom/", boom),
    path("api/boom", boom),
]
handler404 = product_urls.handler404
handler500 = product_urls.handler500


def test_a_failure_of_ours_shows_our_page_and_the_apis_json(settings):
    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)

    page = client.get("/boom/")
    api = client.get("/api/boom")

    assert page.status_code == 500
    assert "Something went wrong on our side" in page.text and 'href="/admin/"' in page.text
    assert "RuntimeError" not in page.text  # nothing of the internals
    assert api.status_code == 500 and api.json() == {"error": "server error"}
