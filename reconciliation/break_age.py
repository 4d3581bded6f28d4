"""How old and how severe breaks are: the age buckets (BREAK_AGE_BUCKETS), a break's severity, the
list's annotations, and

    open_by_bucket()   open breaks per age bucket: for the dashboard, the
                       `revassure_breaks_open{bucket}` metric, and with
                       oldest_open_days() an alert on old breaks.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypedDict

from django.conf import settings
from django.db.models import Case, Count, F, IntegerField, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from reconciliation.models import OPEN_BREAK_STATES, Break, BreakSeverity

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


def bucket_names() -> list[str]:
    """The age buckets' names from BREAK_AGE_BUCKETS: "0-1", "2-7", "8-30", "over-30"."""
    names, low = [], 0
    for high in settings.BREAK_AGE_BUCKETS:
        names.append(f"{low}-{high}")
        low = high + 1
    return [*names, f"over-{settings.BREAK_AGE_BUCKETS[-1]}"]


def bucket_label(name: str) -> str:
    return name.replace("over-", "over ").replace("-", "–") + " days"


def age_days(brk: Break, now: datetime | None = None) -> int:
    """Whole days from the first sighting to now (to the close, once closed)."""
    end = brk.closed_at or now or timezone.now()
    return max(0, (end - brk.first_seen).days)


def age_bucket(days: int) -> str:
    for high, name in zip(settings.BREAK_AGE_BUCKETS, bucket_names(), strict=False):
        if days <= high:
            return name
    return bucket_names()[-1]


def severity_of(*, size: int, delta_known: bool, days: int) -> str:
    level = 0
    if size >= settings.BREAK_SEVERITY_HIGH_POINTS:
        level = 2
    elif size >= settings.BREAK_SEVERITY_MEDIUM_POINTS or not delta_known:
        level = 1
    if days > settings.BREAK_SEVERITY_ESCALATE_DAYS:
        level += 1
    return [BreakSeverity.LOW, BreakSeverity.MEDIUM, BreakSeverity.HIGH, BreakSeverity.CRITICAL][level]


def severity(brk: Break, now: datetime | None = None) -> str:
    return severity_of(size=brk.size, delta_known=brk.delta is not None, days=age_days(brk, now))


class Ages(TypedDict):
    """The columns `annotate` adds to each break."""

    age_bucket: str
    severity: str
    severity_rank: int
    open_rank: int


if TYPE_CHECKING:
    AgedBreak = WithAnnotations[Break, Ages]


def annotate(queryset: QuerySet, now: datetime | None = None) -> QuerySet:
    """Breaks with `age_bucket`, `severity`, `severity_rank` (0 low to 3
    critical, so lists sort by severity rather than by its name) and `open_rank` (0 open, 1 closed)
    computed by the database, so lists filter and sort on them: the same rules
    as age_bucket() and severity(), written as SQL."""
    now = now or timezone.now()
    end = Coalesce(F("closed_at"), Value(now))

    def older_than(days: int) -> Q:  # age_days > days
        return Q(first_seen__lte=end - timedelta(days=days + 1))

    names = bucket_names()
    bucket = Case(
        *(
            When(~older_than(high), then=Value(name))
            for high, name in zip(settings.BREAK_AGE_BUCKETS, names, strict=False)
        ),
        default=Value(names[-1]),
    )
    high = Q(size__gte=settings.BREAK_SEVERITY_HIGH_POINTS)
    medium = Q(size__gte=settings.BREAK_SEVERITY_MEDIUM_POINTS) | Q(delta__isnull=True)
    old = older_than(settings.BREAK_SEVERITY_ESCALATE_DAYS)
    level = Case(
        When(high & old, then=Value(BreakSeverity.CRITICAL)),
        When(high, then=Value(BreakSeverity.HIGH)),
        When(medium & old, then=Value(BreakSeverity.HIGH)),
        When(medium, then=Value(BreakSeverity.MEDIUM)),
        When(old, then=Value(BreakSeverity.MEDIUM)),
        default=Value(BreakSeverity.LOW),
    )
    rank = Case(
        When(status__in=OPEN_BREAK_STATES, then=Value(0)), default=Value(1), output_field=IntegerField()
    )
    severity_rank = Case(
        *(When(severity=Value(s), then=Value(n)) for n, s in enumerate(BreakSeverity)),
        output_field=IntegerField(),
    )
    return queryset.annotate(age_bucket=bucket, severity=level, open_rank=rank).annotate(
        severity_rank=severity_rank
    )


def open_by_bucket(now: datetime | None = None) -> dict[str, int]:
    """{bucket: open breaks of that age}, every bucket present (zeros too), in
    bucket order: what `revassure_breaks_open{bucket}` and the dashboard show.
    One query."""
    counts = dict.fromkeys(bucket_names(), 0)
    rows = (
        annotate(Break.objects.filter(status__in=OPEN_BREAK_STATES), now)
        .values("age_bucket")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        counts[row["age_bucket"]] = row["n"]
    return counts


def oldest_open_days(now: datetime | None = None) -> int | None:
    """Age in days of the oldest open break (None when none is open): for an
    alert rule "a break older than N days"."""
    oldest = Break.objects.filter(status__in=OPEN_BREAK_STATES).order_by("first_seen").first()
    return None if oldest is None else age_days(oldest, now)
