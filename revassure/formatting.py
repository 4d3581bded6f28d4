"""Numbers, money, points and times as people read them, the same on every
page, CSV aside (exports keep raw values for spreadsheets).

    points(2648395)              -> "2,648,395"
    signed(-1200)                -> "−1,200"  (a true minus sign); signed(5) -> "+5"; signed(0) -> "0"
    money(Decimal("12477.4"), "EUR") -> "12,477.40 EUR"  (at least two decimals, never fewer than
                                    the amount holds: a reconciliation does not round a difference away)
    when(aware datetime)         -> "7 Dec 2026, 08:18 UTC"  (in the viewer's zone, the zone named)
    duration(timedelta)          -> "3 hours, 5 minutes"
    size(48992)                  -> "47.8 KB"
    shown(None / False / 1570)   -> "—" / "no" / "1,570"
    label("replay_file")         -> "Replay file"

The rendering is Django's (floatformat, dateformat, timesince, filesizeformat)
with the active language's separators and the active time zone
(revassure.timezones activates the viewer's). None and values that are not
numbers (a malformed amount) are shown as they are, never coerced: a string
amount is a finding, not a zero.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.template.defaultfilters import filesizeformat, floatformat
from django.utils import dateformat, timezone
from django.utils.timesince import timesince

MINUS = "\u2212"
EMPTY = "—"
# "7 Dec 2026, 08:18 UTC": Django's date format letters; T names the zone.
WHEN_FORMAT = "j M Y, H:i T"


def points(value: Any) -> str:
    if value is None:
        return EMPTY
    if type(value) is not int:
        return repr(value)
    return f"{value:,}".replace("-", MINUS)


def signed(value: Any) -> str:
    if value is None:
        return EMPTY
    if type(value) is not int:
        return repr(value)
    if value == 0:
        return "0"
    return ("+" if value > 0 else MINUS) + f"{abs(value):,}"


def amount(value: Any) -> str:
    """A decimal amount with separators and at least two decimals ("12,477.40");
    an amount with more decimals keeps them ("0.125"), so nothing is rounded away."""
    if value is None or value == "":
        return EMPTY
    try:
        number = Decimal(value) if isinstance(value, (str, int)) and type(value) is not bool else value
        if not isinstance(number, Decimal) or not number.is_finite():
            return repr(value)
    except (InvalidOperation, ValueError):
        return repr(value)
    exponent = number.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # a finite number's (checked above): never "n", "N" or "F"
    places = max(2, -exponent)
    return floatformat(number, f"{places}g").replace("-", MINUS)


def money(value: Any, currency: str = "") -> str:
    """An amount in its currency: "12,477.40 EUR"."""
    text = amount(value)
    return f"{text} {currency}" if currency and text != EMPTY else text


def when(value: datetime | None) -> str:
    if value is None:
        return EMPTY
    if value.tzinfo is None:
        raise ValueError("naive datetime: times are aware everywhere in revassure")
    return dateformat.format(timezone.localtime(value), WHEN_FORMAT)


def duration(value: timedelta | None) -> str:
    """A length of time in words, its two largest units: "3 hours, 5 minutes"."""
    if value is None:
        return EMPTY
    if value < timedelta(minutes=1):
        seconds = max(0, int(value.total_seconds()))
        return f"{seconds} second{'' if seconds == 1 else 's'}"
    start = timezone.now()
    return timesince(start, start + value)


def size(value: Any) -> str:
    """A number of bytes as people read it: "47.8 KB"."""
    if value is None:
        return EMPTY
    return filesizeformat(value)


def shown(value: Any) -> str:
    """A stored value of any kind (a request's result, evidence) as people read
    it: nothing as "—", booleans as yes/no, integers with separators, decimals
    as amounts, times with their zone; anything else as its text."""
    if value is None or value == "":
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return points(value)
    if isinstance(value, Decimal):
        return amount(value)
    if isinstance(value, datetime):
        return when(value)
    return str(value)


def label(value: Any) -> str:
    """A stored code (`replay_file`, `post_adjustment`) as words; prefer a
    TextChoices label where there is one."""
    if value is None or value == "":
        return EMPTY
    text = str(value).replace("_", " ").replace(".", " ")
    return text[:1].upper() + text[1:]
