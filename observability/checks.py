"""Start-up checks of the observability settings (ids revassure.E03x)."""

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

MIN_TOKEN_LENGTH = 16


@register()
def observability_configuration(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if settings.METRICS_TOKEN and len(settings.METRICS_TOKEN) < MIN_TOKEN_LENGTH:
        errors.append(
            Error(f"METRICS_TOKEN must be at least {MIN_TOKEN_LENGTH} characters", id="revassure.E030")
        )
    url = urlsplit(settings.ALERT_WEBHOOK_URL)
    if settings.ALERT_WEBHOOK_URL and (url.scheme not in ("http", "https") or not url.netloc):
        errors.append(Error("ALERT_WEBHOOK_URL must be an http:// or https:// URL", id="revassure.E031"))
    for address in settings.ALERT_EMAILS:
        try:
            validate_email(address)
        except ValidationError:
            errors.append(Error(f"ALERT_EMAILS: {address!r} is not an email address", id="revassure.E032"))
    if settings.ALERT_EMAILS:
        sender = settings.ALERT_FROM_EMAIL
        if not _is_address(sender) or sender.rpartition("@")[2].lower() in LOCAL_DOMAINS:
            errors.append(
                Error(
                    f"ALERT_FROM_EMAIL (or DEFAULT_FROM_EMAIL) must be the address alert emails come "
                    f"from, one a mail server accepts: not {sender!r}",
                    id="revassure.E033",
                )
            )
        site = urlsplit(settings.SITE_URL)
        if site.scheme not in ("http", "https") or not site.netloc:
            errors.append(
                Error(
                    f"SITE_URL must be the http:// or https:// address people reach the back office at "
                    f"(the links in alert emails), not {settings.SITE_URL!r}",
                    id="revassure.E034",
                )
            )
    return errors


# Domains no mail server delivers from: a sender there bounces or lands in spam.
LOCAL_DOMAINS = ("localhost", "localhost.localdomain", "example.invalid")


def _is_address(value: str) -> bool:
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True
