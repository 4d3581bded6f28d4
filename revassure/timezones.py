"""Times in the viewer's zone: the browser names its zone (static/revassure/nav.js
keeps Intl's zone in the `revassure_tz` cookie) and this middleware makes it the
active zone of the request, so revassure.formatting.when and Django's own date
displays show local times with the zone named. No cookie, or a zone that
zoneinfo does not know: settings.TIME_ZONE (UTC)."""

from datetime import UTC, datetime
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone

COOKIE = "revassure_tz"
# What a caller says of a time in_utc answers None for, after naming the time.
OUT_OF_RANGE = "is out of range (before year 1 or after 9999 in UTC)"


def in_utc(value: datetime) -> datetime | None:
    """An aware time from outside (an API body, a header, a statement, an
    event), taken to UTC before anything stores or compares it; None when UTC
    has no such time (past year 9999 or before year 1 once its offset is
    applied). Python accepts offsets up to a day; PostgreSQL refuses a time
    whose offset is past 15:59 (`-21:56`): in UTC every database takes it."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return None


def viewer_zone(name: str | None) -> ZoneInfo | None:
    """The zone a browser named, or None when there is none or it is not a zone."""
    if not name or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


class ViewerTimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        zone = viewer_zone(unquote(request.COOKIES.get(COOKIE, "")))
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
