"""Feature flags: a default per environment, overridable at runtime by ops.

The default of each flag comes from settings.FEATURE_FLAG_DEFAULTS (environment
variables); an override stored in the database wins. Every check reads the
database, so a change takes effect at once in every process, without a restart.
A job whose flag is off raises FeatureDisabled, which each entry point turns
into its own clear refusal (a command's exit code, an admin message, a 503).
"""

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from revassure.models import FeatureFlag, FeatureFlagChange
from revassure.refusals import Refused, require


class FeatureDisabled(Refused):
    def __init__(self, name: str, reason: str = ""):
        self.name = name
        self.reason = reason
        detail = f" ({reason})" if reason else ""
        super().__init__(f"feature flag '{name}' is off{detail}")


def known_flags() -> list[str]:
    return sorted(settings.FEATURE_FLAG_DEFAULTS)


def default_for(name: str) -> bool:
    if name not in settings.FEATURE_FLAG_DEFAULTS:
        raise KeyError(f"unknown feature flag: {name}")
    return settings.FEATURE_FLAG_DEFAULTS[name]


def is_enabled(name: str) -> bool:
    default = default_for(name)
    override = FeatureFlag.objects.filter(name=name).values_list("override", flat=True).first()
    return default if override is None else override


def require_enabled(name: str) -> None:
    if not is_enabled(name):
        reason = FeatureFlag.objects.filter(name=name).values_list("reason", flat=True).first() or ""
        raise FeatureDisabled(name, reason)


def ensure_flags() -> None:
    """Create a row for every known flag, so the admin lists them all."""
    for name in known_flags():
        FeatureFlag.objects.get_or_create(name=name)


def set_flag(name: str, override: bool | None, *, actor: User, reason: str) -> FeatureFlag:
    """Override a flag (True/False) or return it to its default (None), with a reason."""
    default_for(name)
    if not reason.strip():
        raise ValueError("a reason is required to change a feature flag")
    require(actor, "revassure.change_featureflag", "change feature flags")
    with transaction.atomic():
        flag, _ = FeatureFlag.objects.select_for_update().get_or_create(name=name)
        previous = flag.override
        flag.override = override
        flag.reason = reason
        flag.updated_by = actor
        flag.updated_at = timezone.now()
        flag.save(update_fields=["override", "reason", "updated_by", "updated_at"])
        FeatureFlagChange.objects.create(
            flag=flag,
            previous=previous,
            override=override,
            effective=default_for(name) if override is None else override,
            reason=reason,
            actor=actor,
        )
    return flag
