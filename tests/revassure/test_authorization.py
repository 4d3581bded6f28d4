"""Authorization does not depend on which sign-in methods are on (issue 9, defect 7)."""

import json
import os
import subprocess
import sys
import uuid

import pytest
from django.contrib.auth.models import User

from devtools.emulator import ROOT
from revassure import settings as settings_module


@pytest.mark.parametrize("password_login", [True, False])
@pytest.mark.parametrize("sso", [True, False])
def test_one_backend_always_reads_permissions_from_the_database(password_login, sso):
    backends = settings_module.authentication_backends(password_login=password_login, sso=sso)

    permission_backends = {
        "django.contrib.auth.backends.ModelBackend",
        "revassure.auth_backends.PermissionsOnlyBackend",
    }
    assert len(permission_backends & set(backends)) == 1
    assert ("django.contrib.auth.backends.ModelBackend" in backends) is password_login
    assert ("revassure.sso.StaffOIDCBackend" in backends) is sso
    assert backends[0] == "axes.backends.AxesStandaloneBackend"


@pytest.mark.django_db
def test_with_password_login_off_an_ops_user_keeps_their_permissions_and_cannot_sign_in_by_password(
    ops, settings, client
):
    settings.AUTHENTICATION_BACKENDS = settings_module.authentication_backends(
        password_login=False, sso=False
    )
    ops = User.objects.get(pk=ops.pk)  # no permission cache from the fixture's backends

    assert ops.has_perm("revassure.manage_freeze")
    response = client.post("/admin/login/", {"username": "olga", "password": "password", "next": "/admin/"})
    assert "_auth_user_id" not in client.session and response.status_code == 200


def manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def test_freeze_command_works_for_ops_with_debug_off_no_sso_and_password_login_off(
    tmp_path, firestore_emulator
):
    """The production settings path, as `manage.py` reads it from the environment."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OIDC_", "PASSWORD_LOGIN", "DJANGO_SETTINGS", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": "test-only-not-secret",
            "PASSWORD_LOGIN_ENABLED": "0",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'prod-like.sqlite3'}",
            "GOOGLE_CLOUD_PROJECT": f"authz-{uuid.uuid4().hex[:10]}",
            "FIRESTORE_EMULATOR_HOST": firestore_emulator,
            "LOG_LEVEL": "WARNING",
        }
    )
    assert manage(env, "migrate", "--noinput").returncode == 0
    make_ops = (
        "from django.contrib.auth.models import Group, User; "
        "from django.conf import settings; "
        "User.objects.create_user('ops', 'ops@example.com', 'pw').groups.add(Group.objects.get(name='ops')); "
        "print(settings.AUTHENTICATION_BACKENDS)"
    )
    made = manage(env, "shell", "-c", make_ops)
    assert made.returncode == 0, made.stderr
    assert "ModelBackend'" not in made.stdout  # password login really is off here

    frozen = manage(env, "freeze", "--reason", "cutover", "--actor", "ops", "--json")

    assert frozen.returncode == 0, frozen.stderr
    assert json.loads(frozen.stdout) | {"at": None} == {
        "frozen": True,
        "reason": "cutover",
        "actor": "ops",
        "at": None,
    }
