import pytest
from django.urls import reverse

from revassure import flags
from revassure.models import FeatureFlag, FeatureFlagChange

FLAG = "reconciliation_enabled"


@pytest.mark.django_db
def test_the_default_comes_from_the_environment_setting(settings):
    assert flags.is_enabled(FLAG) is True
    settings.FEATURE_FLAG_DEFAULTS = {FLAG: False}
    assert flags.is_enabled(FLAG) is False


@pytest.mark.django_db
def test_an_override_takes_effect_at_once_and_is_recorded(ops):
    flags.set_flag(FLAG, False, actor=ops, reason="cutover")
    assert flags.is_enabled(FLAG) is False
    with pytest.raises(flags.FeatureDisabled, match="cutover"):
        flags.require_enabled(FLAG)

    flags.set_flag(FLAG, None, actor=ops, reason="cutover done")
    assert flags.is_enabled(FLAG) is True

    history = list(
        FeatureFlagChange.objects.order_by("id").values_list("previous", "override", "effective", "reason")
    )
    assert history == [(None, False, False, "cutover"), (False, None, True, "cutover done")]
    flag = FeatureFlag.objects.get(name=FLAG)
    assert flag.updated_by == ops and flag.updated_at is not None


@pytest.mark.django_db
def test_changing_a_flag_needs_a_reason_and_the_permission(ops, reviewer):
    with pytest.raises(ValueError, match="reason"):
        flags.set_flag(FLAG, False, actor=ops, reason="  ")
    with pytest.raises(PermissionError):
        flags.set_flag(FLAG, False, actor=reviewer, reason="why not")
    with pytest.raises(KeyError):
        flags.set_flag("no_such_flag", False, actor=ops, reason="x")
    assert flags.is_enabled(FLAG) is True
    assert not FeatureFlagChange.objects.exists()


@pytest.mark.django_db
def test_ops_flip_a_flag_in_the_admin_with_a_reason(client, ops):
    client.force_login(ops)
    flag = FeatureFlag.objects.get(name=FLAG)
    url = reverse("admin:revassure_featureflag_change", args=[flag.pk])

    missing_reason = client.post(url, {"state": "off", "change_reason": ""})
    assert missing_reason.status_code == 200 and flags.is_enabled(FLAG)

    response = client.post(url, {"state": "off", "change_reason": "firestore maintenance"}, follow=True)

    assert f"Flag {FLAG} is now off" in response.content.decode()
    assert flags.is_enabled(FLAG) is False
    change = FeatureFlagChange.objects.get()
    assert (change.actor, change.reason, change.effective) == (ops, "firestore maintenance", False)


@pytest.mark.django_db
def test_other_roles_cannot_change_flags_in_the_admin(client, reviewer, outsider):
    flag = FeatureFlag.objects.get(name=FLAG)
    url = reverse("admin:revassure_featureflag_change", args=[flag.pk])
    for user in (reviewer, outsider):
        client.force_login(user)
        assert client.post(url, {"state": "off", "change_reason": "x"}).status_code == 403
    assert flags.is_enabled(FLAG) is True
