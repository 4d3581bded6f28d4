"""Numbers, points and times as people read them, the same on every page, CSV
aside (exports keep raw values for spreadsheets).

    points(2648395)        -> "2,648,395"
    signed(-1200)          -> "−1,200"  (a true minus sign); signed(5) -> "+5"; signed(0) -> "0"
    when(aware datetime)   -> "2026-11-26 07:45 UTC"  (always UTC, always with the zone)
    label("replay_file")   -> "Replay file"

None and values that are not numbers (a malformed amount) are shown as they
are, never coerced: a string amount is a finding, not a zero.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MINUS = "\u2212"
EMPTY = "—"


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


def when(value: datetime | None) -> str:
    if value is None:
        return EMPTY
    if value.tzinfo is None:
        raise ValueError("naive datetime: times are aware everywhere in revassure")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def label(value: Any) -> str:
    """A stored code (`replay_file`, `post_adjustment`) as words; prefer a
    TextChoices label where there is one."""
    if value is None or value == "":
        return EMPTY
    text = str(value).replace("_", " ").replace(".", " ")
    return text[:1].upper() + text[1:]
