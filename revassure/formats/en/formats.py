"""One date format with the zone on every admin page, Django's own displays
included (change lists, view-only fields): "2026-11-26 07:45 UTC", as
revassure.formatting.when writes it. Only display formats: input formats stay
Django's."""

DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i"
