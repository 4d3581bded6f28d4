import pytest
from django.contrib.auth.models import User

LOGIN = "/admin/login/"


def attempt(client, password):
    return client.post(LOGIN, {"username": "alice", "password": password, "next": "/admin/"})


@pytest.mark.django_db
def test_password_guessing_locks_the_account_out(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_user("alice", "alice@example.com", "correct horse battery", is_staff=True)

    for _ in range(2):
        assert attempt(client, "guess").status_code == 200  # the form again, with an error
    locked = attempt(client, "guess")
    assert locked.status_code == 429

    # Locked out: even the right password is refused now.
    assert attempt(client, "correct horse battery").status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_a_successful_login_resets_the_count(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    User.objects.create_user("alice", "alice@example.com", "correct horse battery", is_staff=True)

    attempt(client, "guess")
    attempt(client, "guess")
    assert attempt(client, "correct horse battery").status_code == 302
    client.logout()
    attempt(client, "guess")
    attempt(client, "guess")
    assert attempt(client, "correct horse battery").status_code == 302
