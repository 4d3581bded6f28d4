"""Start-up checks of the observability settings (ids revassure.E03x)."""

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

MIN_TOKEN_LENGTH = 16


@register()
def observability_configuration(app_configs, **kwargs):
    errors = []
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
    return errors
