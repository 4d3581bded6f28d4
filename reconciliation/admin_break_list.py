"""The breaks list's own parts (BreakAdmin, admin_breaks.py): its filters (status, age, severity,
owner, probable cause) and the rows of its CSV export."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from reconciliation import break_actions, break_age
from reconciliation.models import Break, BreakSeverity, BreakStatus, ProbableCause
from revassure.admin_base import require_row_id
from revassure.exports import safe_cell

if TYPE_CHECKING:
    from reconciliation.break_age import AgedBreak

# -- filters ----------------------------------------------------------------------


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("not_closed", "open or acknowledged"), *BreakStatus.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Break]) -> QuerySet[Break]:
        if self.value() == "not_closed":
            return queryset.exclude(status=BreakStatus.CLOSED)
        if self.value() in BreakStatus.values:
            return queryset.filter(status=self.value())
        return queryset


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(name, break_age.bucket_label(name)) for name in break_age.bucket_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AgedBreak]) -> QuerySet[AgedBreak]:
        value = self.value()
        return queryset.filter(age_bucket=value) if value else queryset


class SeverityFilter(admin.SimpleListFilter):
    title = "severity"
    parameter_name = "severity"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return BreakSeverity.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[AgedBreak]) -> QuerySet[AgedBreak]:
        value = self.value()
        return queryset.filter(severity=value) if value else queryset


class OwnerFilter(admin.SimpleListFilter):
    title = "owner"
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("mine", "mine"),
            ("nobody", "nobody"),
            *((str(u.pk), u.get_username()) for u in break_actions.assignees()),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Break]) -> QuerySet[Break]:
        value = self.value()
        if value == "mine":
            return queryset.filter(owner=cast(User, request.user))  # the admin lets only staff in
        if value == "nobody":
            return queryset.filter(owner__isnull=True)
        if value:
            return queryset.filter(owner_id=require_row_id(value, "user"))
        return queryset


class CauseFilter(admin.SimpleListFilter):
    title = "probable cause"
    parameter_name = "cause"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [*ProbableCause.choices, ("pending", "not computed yet")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Break]) -> QuerySet[Break]:
        if self.value() == "pending":
            return queryset.filter(cause="")
        return queryset.filter(cause=self.value()) if self.value() else queryset


# -- CSV ------------------------------------------------------------------------------

BREAK_HEADER = [
    "id",
    "uid",
    "status",
    "resolution",
    "kind",
    "severity",
    "delta",
    "wallet_points",
    "ledger_sum",
    "first_seen",
    "last_seen",
    "age_days",
    "age_bucket",
    "sightings",
    "owner",
    "cause",
    "cause_text",
    "heal_request_id",
    "accepted_by",
    "accepted_reason",
    "closed_at",
]


def break_rows(queryset: QuerySet[Break]) -> Iterator[list[Any]]:
    """The header, then one row per break: raw values, text cells guarded against formulas."""
    yield BREAK_HEADER
    now = timezone.now()
    for b in (
        break_age.annotate(queryset, now).select_related("owner", "accepted_by").iterator(chunk_size=2000)
    ):
        yield [
            b.pk,
            safe_cell(b.uid),
            b.status,
            b.resolution,
            b.kind,
            b.severity,
            b.delta,
            b.wallet_points,
            b.ledger_sum,
            b.first_seen.isoformat(),
            b.last_seen.isoformat(),
            break_age.age_days(b, now),
            b.age_bucket,
            b.sightings_count,
            b.owner.get_username() if b.owner else "",
            b.cause,
            safe_cell(b.cause_text),
            b.heal_request_id or "",
            b.accepted_by.get_username() if b.accepted_by else "",
            safe_cell(b.accepted_reason),
            b.closed_at.isoformat() if b.closed_at else "",
        ]
