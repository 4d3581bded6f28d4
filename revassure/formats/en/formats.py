"""One date format with the zone on every admin page, Django's own displays
included (change lists, view-only fields): "7 Dec 2026, 08:18 UTC", as
revassure.formatting.when writes it, in the viewer's zone. Only display
formats: input formats stay Django's."""

DATETIME_FORMAT = "j M Y, H:i T"
SHORT_DATETIME_FORMAT = "j M Y, H:i T"
DATE_FORMAT = "j M Y"
SHORT_DATE_FORMAT = "j M Y"
TIME_FORMAT = "H:i"
