"""Staff sign-in end to end against a real OpenID provider on loopback (the npm
package oidc-provider, scripts/oidc-provider.mjs): the authorization code flow
through its login and consent pages, the code exchanged by mozilla-django-oidc
over real HTTP, groups taken from the userinfo endpoint."""

import json
import re
import shutil
import subprocess
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from django.contrib.auth.models import User

from devtools.emulator import ROOT, free_port

CALLBACK = "http://testserver/oidc/callback/"


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "oidc-provider").exists():
        pytest.fail("oidc-provider is not installed: run `npm ci` (make install does)")
    accounts = tmp_path_factory.mktemp("oidc") / "accounts.json"
    accounts.write_text("{}")
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "OIDC_CLIENT_ID": "revassure",
        "OIDC_CLIENT_SECRET": "test-only-client-secret",
        "OIDC_REDIRECT_URI": CALLBACK,
        "OIDC_ACCOUNTS_FILE": str(accounts),
    }
    process = subprocess.Popen(
        [node, str(ROOT / "scripts" / "oidc-provider.mjs"), str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in process.stdout:
            if line.startswith("ready"):
                break
        else:
            pytest.fail("the OpenID provider did not start")
        yield {"issuer": f"http://127.0.0.1:{port}", "accounts": accounts}
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def sso(provider, settings):
    issuer = provider["issuer"]
    settings.OIDC_RP_CLIENT_ID = "revassure"
    settings.OIDC_RP_CLIENT_SECRET = "test-only-client-secret"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{issuer}/auth"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{issuer}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{issuer}/me"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{issuer}/jwks"
    settings.SSO_ENABLED = True
    settings.SSO_ALLOWED_DOMAINS = ["revassure.example"]
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "revassure.sso.StaffOIDCBackend"]

    def set_account(login, email, groups, verified=True):
        accounts = json.loads(provider["accounts"].read_text())
        accounts[login] = {"email": email, "email_verified": verified, "groups": groups}
        provider["accounts"].write_text(json.dumps(accounts))

    return set_account


def sign_in(client, login):
    """Go through the provider's login and consent pages as a browser would."""
    start = client.get("/oidc/authenticate/?next=/admin/")
    assert start.status_code == 302
    browser = requests.Session()
    url, method, data = start["Location"], "GET", None
    for _ in range(12):
        if url.startswith(CALLBACK):
            parts = urlsplit(url)
            return client.get(f"{parts.path}?{parts.query}", follow=True)
        response = browser.request(method, url, data=data, allow_redirects=False, timeout=10)
        if response.is_redirect:
            url, method, data = urljoin(url, response.headers["Location"]), "GET", None
            continue
        action = re.search(r'<form[^>]*action="([^"]+)"', response.text)
        assert action, response.text[:500]
        url, method = urljoin(url, action.group(1)), "POST"
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', response.text))
        data = {**hidden, "login": login, "password": "any"} if 'name="login"' in response.text else hidden
    raise AssertionError("the sign-in did not come back to revassure")


@pytest.mark.django_db
def test_an_approver_signs_in_and_lands_in_the_admin_with_that_role(client, sso):
    sso("alice", "Alice@revassure.example", ["finance-approver", "unrelated-team"])

    landed = sign_in(client, "alice")

    assert landed.status_code == 200 and landed.request["PATH_INFO"] == "/admin/"
    user = User.objects.get(email="alice@revassure.example")
    assert user.is_staff and not user.is_superuser
    assert list(user.groups.values_list("name", flat=True)) == ["finance-approver"]
    assert int(client.session["_auth_user_id"]) == user.pk


@pytest.mark.django_db
def test_a_user_from_another_domain_is_refused_and_told_why(client, sso):
    sso("mallory", "mallory@elsewhere.example", ["finance-approver"])

    refused = sign_in(client, "mallory")

    assert refused.status_code == 403
    assert "accounts of elsewhere.example may not use revassure" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    assert not User.objects.exists()


@pytest.mark.django_db
def test_a_user_without_a_mapped_group_is_refused(client, sso):
    sso("bob", "bob@revassure.example", ["marketing"])

    refused = sign_in(client, "bob")

    assert refused.status_code == 403
    assert "you are in no revassure group" in refused.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_group_removed_at_the_provider_is_removed_at_the_next_sign_in(client, sso):
    sso("carol", "carol@revassure.example", ["finance-reviewer", "finance-approver"])
    sign_in(client, "carol")
    user = User.objects.get(email="carol@revassure.example")
    assert set(user.groups.values_list("name", flat=True)) == {"finance-reviewer", "finance-approver"}

    client.logout()
    sso("carol", "carol@revassure.example", ["finance-reviewer"])
    sign_in(client, "carol")
    assert list(user.groups.values_list("name", flat=True)) == ["finance-reviewer"]

    client.logout()
    sso("carol", "carol@revassure.example", [])
    assert sign_in(client, "carol").status_code == 403
    assert not user.groups.exists()


@pytest.mark.django_db
def test_the_login_page_offers_sso_and_hides_passwords_when_not_allowed(client, sso, settings):
    page = client.get("/admin/login/").content.decode()
    assert "Sign in with SSO" in page and 'name="password"' in page

    settings.PASSWORD_LOGIN_ENABLED = False
    page = client.get("/admin/login/").content.decode()
    assert "Sign in with SSO" in page and 'name="password"' not in page


@pytest.mark.django_db
def test_refused_sso_sign_ins_never_lock_out_single_sign_on(client, sso, settings):
    settings.AXES_FAILURE_LIMIT = 2
    sso("mallory", "mallory@elsewhere.example", ["ops"])
    for _ in range(3):
        assert sign_in(client, "mallory").status_code == 403
    sso("alice", "alice@revassure.example", ["ops"])
    assert sign_in(client, "alice").request["PATH_INFO"] == "/admin/"


@pytest.mark.django_db
def test_an_sso_session_is_rechecked_with_the_provider_when_its_token_expires(client, sso, settings):
    from django.test import Client

    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "revassure.sso.SessionRefresh"]
    sso("alice", "alice@revassure.example", ["ops"])
    client = Client()
    sign_in(client, "alice")
    assert client.get("/admin/").status_code == 200

    session = client.session
    session["oidc_id_token_expiration"] = 0  # the ID token has expired
    session.save()
    refresh = client.get("/admin/")

    assert refresh.status_code == 302
    assert refresh["Location"].startswith(settings.OIDC_OP_AUTHORIZATION_ENDPOINT)
    assert "prompt=none" in refresh["Location"]
    # The job API and the probes are never sent to the provider.
    assert client.get("/healthz").status_code == 200
