"""Times in the viewer's zone: the browser names its zone (static/revassure/nav.js
keeps Intl's zone in the `revassure_tz` cookie) and this middleware makes it the
active zone of the request, so revassure.formatting.when and Django's own date
displays show local times with the zone named. No cookie, or a zone that
zoneinfo does not know: settings.TIME_ZONE (UTC)."""

from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.utils import timezone

COOKIE = "revassure_tz"


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
