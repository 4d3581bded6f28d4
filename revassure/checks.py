"""Start-up checks: wrong configuration fails early and names the variable.

The apps check their own settings where a check needs their code
(reconciliation/checks.py: RECONCILE_DAILY_AT); the ids are the project's,
revassure.E001 and on, wherever a check lives.
"""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register


@register()
def configuration(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if settings.RECONCILE_CONCURRENCY < 1:
        errors.append(Error("RECONCILE_CONCURRENCY must be at least 1", id="revassure.E002"))
    if settings.RECONCILE_CHUNK_SIZE < 1:
        errors.append(Error("RECONCILE_CHUNK_SIZE must be at least 1", id="revassure.E003"))
    if not settings.GOOGLE_CLOUD_PROJECT:
        errors.append(Error("GOOGLE_CLOUD_PROJECT must name the Firestore project", id="revassure.E004"))
    if settings.REDIS_URL and not settings.REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        errors.append(Error("REDIS_URL must be a redis://, rediss:// or unix:// URL", id="revassure.E005"))
    for name in ("AUTO_HEAL_MAX_DRIFT", "TWO_APPROVERS_ABOVE", "PROPOSAL_TTL_HOURS"):
        if getattr(settings, name) < (1 if name == "PROPOSAL_TTL_HOURS" else 0):
            errors.append(Error(f"{name} must not be negative (or zero, for a time)", id="revassure.E007"))
    if settings.Q_CLUSTER["timeout"] >= settings.Q_CLUSTER["retry"]:
        errors.append(Error("Q_TIMEOUT must stay below the queue's retry time", id="revassure.E006"))
    return errors
