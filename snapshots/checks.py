"""Start-up checks of the snapshot settings: a restore must never be able to reach production."""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from revassure import files


@register()
def restore_targets(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    production = settings.FIRESTORE_PRODUCTION_PROJECT
    allowed = settings.RESTORE_ALLOWED_PROJECTS
    if production and production in allowed:
        problems.append(
            Error(
                f"RESTORE_ALLOWED_PROJECTS lists {production}, the production project "
                "(FIRESTORE_PRODUCTION_PROJECT): snapshots are never restored there",
                id="revassure.E050",
            )
        )
    if allowed and not production and not settings.FIRESTORE_EMULATOR_HOST:
        problems.append(
            Warning(
                "RESTORE_ALLOWED_PROJECTS is set but FIRESTORE_PRODUCTION_PROJECT is not: "
                "name the production project so that no restore can reach it",
                id="revassure.W050",
            )
        )
    bucket = settings.SNAPSHOT_BUCKET
    if bucket and not bucket.startswith("gs://"):
        problems.append(Error(f"SNAPSHOT_BUCKET must be a gs:// URI (got {bucket!r})", id="revassure.E051"))
    place = str(settings.SNAPSHOT_DIR)
    if files.is_uri(place) and "/" not in place.removeprefix(files.PREFIX).strip("/"):
        problems.append(
            Error(
                f"SNAPSHOT_DIR must be a directory or gs://bucket/prefix (got {place!r}): "
                "snapshots need a prefix of their own",
                id="revassure.E052",
            )
        )
    return problems
