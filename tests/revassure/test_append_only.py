"""The freeze's history and the flags' history refuse UPDATE and DELETE in the
database itself (SQLite here; PostgreSQL when DATABASE_URL says so)."""

import pytest
from django.db import DatabaseError, connection, transaction

from revassure import flags, freeze
from revassure.models import FeatureFlagChange, FreezeEvent


@pytest.fixture
def freeze_event(gateway, ops):
    return freeze.freeze(actor=ops, reason="cutover", gateway=gateway)


@pytest.fixture
def flag_change(ops):
    flags.set_flag("auto_heal_enabled", True, actor=ops, reason="pilot")
    return FeatureFlagChange.objects.get()


def refused(action):
    with pytest.raises(DatabaseError, match="is append-only"), transaction.atomic():
        action()


@pytest.mark.django_db
def test_a_freeze_event_cannot_be_edited_or_deleted(freeze_event):
    events = FreezeEvent.objects.filter(pk=freeze_event.pk)

    refused(lambda: events.update(reason="nothing to see", frozen=False))
    refused(events.delete)
    refused(lambda: raw(f"UPDATE revassure_freezeevent SET frozen = FALSE WHERE id = {freeze_event.pk}"))
    refused(lambda: raw(f"DELETE FROM revassure_freezeevent WHERE id = {freeze_event.pk}"))

    assert list(FreezeEvent.objects.values_list("frozen", "reason")) == [(True, "cutover")]
    assert freeze.current() == freeze_event


@pytest.mark.django_db
def test_a_feature_flag_change_cannot_be_edited_or_deleted(flag_change):
    changes = FeatureFlagChange.objects.filter(pk=flag_change.pk)

    refused(lambda: changes.update(reason="rewritten"))
    refused(changes.delete)
    refused(lambda: raw(f"DELETE FROM revassure_featureflagchange WHERE id = {flag_change.pk}"))

    assert list(FeatureFlagChange.objects.values_list("override", "reason")) == [(True, "pilot")]


@pytest.mark.django_db
def test_the_histories_still_grow(gateway, ops, freeze_event, flag_change):
    freeze.unfreeze(actor=ops, reason="done", gateway=gateway)
    flags.set_flag("auto_heal_enabled", None, actor=ops, reason="pilot over")

    assert FreezeEvent.objects.count() == 2 and FeatureFlagChange.objects.count() == 2


def raw(sql):
    with connection.cursor() as cursor:
        cursor.execute(sql)
