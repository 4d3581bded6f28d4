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


@pytest.mark.django_db
def test_a_non_staff_user_with_the_right_password_is_told_why_not_that_the_password_is_wrong(client):
    User.objects.create_user("alice", "alice@example.com", "correct horse battery", is_staff=False)

    right = attempt(client, "correct horse battery")
    wrong = attempt(client, "guess")

    assert right.status_code == 200 and "_auth_user_id" not in client.session
    assert "not a staff account of the back office" in right.text
    assert "correct username and password" not in right.text
    # A wrong password still says only that: nothing is told to someone guessing.
    assert "correct username and password" in wrong.text
    assert "not a staff account" not in wrong.text
