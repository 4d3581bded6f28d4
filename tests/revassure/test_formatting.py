from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.http import HttpResponse
from django.template import Context, Template
from django.utils import timezone as django_timezone

from revassure import formatting
from revassure.timezones import ViewerTimeZoneMiddleware

# CI's PostgreSQL pass skips it, having run it in the defaults pass: touches no database.
pytestmark = pytest.mark.same_on_every_database


def test_points_have_thousands_separators_and_a_true_minus():
    assert formatting.points(2648395) == "2,648,395"
    assert formatting.points(-1200) == "\u22121,200"
    assert formatting.points(None) == "—"


def test_signed_deltas_say_their_sign():
    assert (formatting.signed(5), formatting.signed(-1200), formatting.signed(0)) == (
        "+5",
        "\u22121,200",
        "0",
    )


def test_a_malformed_amount_is_shown_as_it_is_never_coerced():
    assert formatting.points("12") == "'12'"
    assert formatting.signed(10.0) == "10.0"
    assert formatting.points(True) == "True"


def test_times_are_one_format_in_the_viewers_zone_with_the_zone_named():
    paris = timezone(timedelta(hours=1))
    assert formatting.when(datetime(2026, 11, 26, 8, 45, tzinfo=paris)) == "26 Nov 2026, 07:45 UTC"
    until = datetime.fromisoformat("2026-12-07T08:18:58.174932+00:00")
    assert formatting.when(until) == "7 Dec 2026, 08:18 UTC"
    with django_timezone.override(ZoneInfo("Europe/Paris")):
        assert formatting.when(until) == "7 Dec 2026, 09:18 CET"
    with pytest.raises(ValueError):
        formatting.when(datetime(2026, 11, 26, 7, 45))  # noqa: DTZ001 (the point of the test)


def test_amounts_have_separators_and_fixed_decimals_never_rounding_a_difference_away():
    assert formatting.money(Decimal("12477.4"), "EUR") == "12,477.40 EUR"
    assert formatting.money(Decimal("24"), "EUR") == "24.00 EUR"
    assert formatting.amount(Decimal("10.000000")) == "10.00"
    assert formatting.amount(Decimal("-1234567.125")) == "\u22121,234,567.125"
    assert formatting.money(None, "EUR") == "—"
    assert formatting.amount("1,5") == "'1,5'"  # a malformed amount is shown as it is


def test_stored_values_read_as_people_read_them():
    assert [formatting.shown(v) for v in (None, False, True, 1570, Decimal("2.5"))] == [
        "—",
        "no",
        "yes",
        "1,570",
        "2.50",
    ]
    assert formatting.size(48992) == "47.8\xa0KB"
    assert formatting.duration(timedelta(hours=3, minutes=5)) == "3\xa0hours, 5\xa0minutes"
    assert formatting.duration(timedelta(seconds=40)) == "40 seconds"


def test_the_viewers_zone_comes_from_the_browser_and_a_bad_name_falls_back_to_utc(rf):
    seen = []

    def page(request):
        seen.append(formatting.when(datetime(2026, 12, 7, 8, 18, tzinfo=UTC)))
        return HttpResponse()

    middleware = ViewerTimeZoneMiddleware(page)
    for cookie in ["America%2FNew_York", "../etc/passwd", "Not/AZone", ""]:
        request = rf.get("/")
        request.COOKIES["revassure_tz"] = cookie
        middleware(request)
    assert seen == [
        "7 Dec 2026, 03:18 EST",
        "7 Dec 2026, 08:18 UTC",
        "7 Dec 2026, 08:18 UTC",
        "7 Dec 2026, 08:18 UTC",
    ]


def test_codes_read_as_words():
    assert formatting.label("replay_file") == "Replay file"
    assert formatting.label("payment.refunded") == "Payment refunded"


def test_the_template_filters_are_the_same_functions():
    rendered = Template(
        "{% load revassure %}{{ n|points }} {{ d|signed }} {{ a|money:'EUR' }} {{ ok|shown }} {{ b|size }}"
    ).render(Context({"n": 1234, "d": -5, "a": Decimal("12477.4"), "ok": False, "b": 48992}))
    assert rendered == "1,234 \u22125 12,477.40 EUR no 47.8\xa0KB"
