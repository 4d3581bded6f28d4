from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.template import Context, Template

from revassure import formatting


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


def test_times_are_one_format_in_utc_with_the_zone():
    paris = timezone(timedelta(hours=1))
    assert formatting.when(datetime(2026, 11, 26, 8, 45, tzinfo=paris)) == "2026-11-26 07:45 UTC"
    assert formatting.when(datetime(2026, 11, 26, 7, 45, tzinfo=UTC)) == "2026-11-26 07:45 UTC"
    with pytest.raises(ValueError):
        formatting.when(datetime(2026, 11, 26, 7, 45))  # noqa: DTZ001 (the point of the test)


def test_codes_read_as_words():
    assert formatting.label("replay_file") == "Replay file"
    assert formatting.label("payment.refunded") == "Payment refunded"


def test_the_template_filters_are_the_same_functions():
    rendered = Template("{% load revassure %}{{ n|points }} {{ d|signed }}").render(
        Context({"n": 1234, "d": -5})
    )
    assert rendered == "1,234 \u22125"
