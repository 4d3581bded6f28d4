"""The freeze does what was asked (freeze, or unfreeze), never a toggle."""

import threading

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.urls import reverse

from revassure import freeze
from revassure.firestore import get_gateway
from revassure.models import FreezeEvent
from revassure.roles import OPS

FREEZE_PAGE = "admin:revassure_freeze_toggle"


def history():
    return [(e.frozen, e.actor.username, e.reason) for e in FreezeEvent.objects.order_by("id")]


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def ops2(db):
    user = User.objects.create_user("oscar", "oscar@example.com", "password", is_staff=True)
    user.groups.add(Group.objects.get(name=OPS))
    return user


@pytest.mark.django_db
def test_the_page_says_which_state_it_asks_for(client, gateway, ops):
    client.force_login(ops)
    page = client.get(reverse(FREEZE_PAGE)).content.decode()
    assert 'name="state" value="freeze"' in page

    freeze.freeze(actor=ops, reason="cutover", gateway=gateway)

    page = client.get(reverse(FREEZE_PAGE)).content.decode()
    assert 'name="state" value="unfreeze"' in page


@pytest.mark.django_db
def test_freeze_posted_twice_from_one_page_stays_frozen_and_the_second_is_refused(client, gateway, ops):
    client.force_login(ops)
    page = client.get(reverse(FREEZE_PAGE))  # loaded while unfrozen

    first = client.post(reverse(FREEZE_PAGE), {"state": "freeze", "reason": "cutover"}, follow=True)
    second = client.post(reverse(FREEZE_PAGE), {"state": "freeze", "reason": "cutover"})

    assert freeze.current() is not None
    assert history() == [(True, "olga", "cutover")]
    assert page.context["form"]["state"].value() == "freeze"
    assert "Manual balance changes are frozen." in messages_of(first)
    refusal = second.context["form"].non_field_errors()[0]
    assert refusal.startswith("manual balance changes are already frozen; olga froze them at ")
    assert refusal.endswith("UTC: cutover")
    assert gateway.get_config("adjustments")["frozen"] is True


@pytest.mark.django_db
def test_two_ops_users_pressing_freeze_leave_it_frozen(client, gateway, ops, ops2):
    # Both load the page while unfrozen, then both press "Freeze".
    pages = []
    for user in (ops, ops2):
        client.force_login(user)
        pages.append(client.get(reverse(FREEZE_PAGE)))

    client.force_login(ops)
    client.post(reverse(FREEZE_PAGE), {"state": "freeze", "reason": "cutover (olga)"})
    client.force_login(ops2)
    refused = client.post(reverse(FREEZE_PAGE), {"state": "freeze", "reason": "cutover (oscar)"})

    assert freeze.current() is not None and freeze.current().actor == ops
    assert history() == [(True, "olga", "cutover (olga)")]
    assert [page.context["form"]["state"].value() for page in pages] == ["freeze", "freeze"]
    assert "already frozen; olga froze them" in refused.context["form"].non_field_errors()[0]


@pytest.mark.django_db
def test_unfreeze_posted_while_unfrozen_is_refused_and_names_who_unfroze(client, gateway, ops, ops2):
    freeze.freeze(actor=ops, reason="cutover", gateway=gateway)
    freeze.unfreeze(actor=ops2, reason="cutover done", gateway=gateway)
    client.force_login(ops)

    refused = client.post(reverse(FREEZE_PAGE), {"state": "unfreeze", "reason": "done"})

    assert freeze.current() is None
    assert "already unfrozen; oscar unfroze them at " in refused.context["form"].non_field_errors()[0]
    assert len(history()) == 2


@pytest.mark.django_db
def test_a_post_that_does_not_say_which_state_changes_nothing(client, gateway, ops):
    client.force_login(ops)

    response = client.post(reverse(FREEZE_PAGE), {"reason": "cutover"})

    assert "state" in response.context["form"].errors
    assert not FreezeEvent.objects.exists()


@pytest.mark.django_db
def test_the_service_refuses_the_state_that_holds_naming_who_set_it(gateway, ops, ops2):
    with pytest.raises(freeze.AlreadyInState, match="already unfrozen; they have never been frozen"):
        freeze.unfreeze(actor=ops, reason="x", gateway=gateway)
    freeze.freeze(actor=ops, reason="cutover", gateway=gateway)

    with pytest.raises(freeze.AlreadyInState, match="already frozen; olga froze them at .* UTC: cutover"):
        freeze.freeze(actor=ops2, reason="cutover too", gateway=gateway)


@pytest.mark.django_db
def test_the_commands_refuse_the_state_that_holds_naming_who_set_it(gateway, ops, ops2):
    call_command("freeze", "--reason", "cutover", "--actor", "olga")

    with pytest.raises(CommandError, match="already frozen; olga froze them at .* UTC: cutover"):
        call_command("freeze", "--reason", "again", "--actor", "oscar")
    call_command("unfreeze", "--reason", "done", "--actor", "oscar")
    with pytest.raises(CommandError, match="already unfrozen; oscar unfroze them at .* UTC: done"):
        call_command("unfreeze", "--reason", "done", "--actor", "olga")
    assert history() == [(True, "olga", "cutover"), (False, "oscar", "done")]


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs DATABASE_URL on PostgreSQL (row locks across connections)",
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_ops_users_freezing_at_the_same_moment_freeze_once(firestore_project):
    gateway = get_gateway(firestore_project)
    users = []
    for name in ("olga", "oscar"):
        user = User.objects.create_user(name, f"{name}@example.com", "password", is_staff=True)
        user.groups.add(Group.objects.get(name=OPS))
        users.append(user)
    freeze.freeze(actor=users[0], reason="rehearsal", gateway=gateway)
    freeze.unfreeze(actor=users[0], reason="rehearsal done", gateway=gateway)
    barrier = threading.Barrier(2)
    outcomes = []

    def press_freeze(user):
        barrier.wait()
        try:
            freeze.freeze(actor=user, reason=f"cutover ({user.username})", gateway=gateway)
            outcomes.append("frozen")
        except freeze.AlreadyInState as exc:
            outcomes.append(str(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=press_freeze, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    refused = [outcome for outcome in outcomes if outcome != "frozen"]
    assert len(outcomes) == 2 and len(refused) == 1 and "already frozen; " in refused[0]
    assert freeze.current() is not None
    assert [e.frozen for e in FreezeEvent.objects.order_by("id")] == [True, False, True]
