"""CSV exports of the admin: one way to write a table, one guard against
formulas, and one mixin for a list exported as it is filtered on its page.

Every export is a clean table a spreadsheet can pivot: a header row, then one
row per record, raw values (ints, Decimals, ISO times), text cells guarded
against formulas (`safe_cell`), streamed so a large export never sits in memory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import path, reverse

from revassure.refusals import may

# What makes a spreadsheet read a cell as a formula (OWASP, CSV injection): =, +, -, @, TAB, CR.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """A text cell a spreadsheet shows as text: one starting like a formula gets a
    leading quote. Only text columns go through here; numeric columns hold ints,
    and a signed number there (a delta of -5) is data, not a formula."""
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_response(rows: Iterable[Iterable[Any]], filename: str) -> StreamingHttpResponse:
    """The rows (the header first) as a streamed CSV download named `filename`."""
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ListExport(admin.ModelAdmin):
    """A ModelAdmin's list exported as CSV: the rows selected (an action), or the
    whole list as filtered on the page (an "Export" link with the page's query
    string, at `export.csv` beside the list). Who holds `export_permission`
    may export; the link is shown to them only.

    Put it first among the bases; an admin names the permission, the file and its table:

        class BreakAdmin(ListExport, BaseAdmin):
            export_permission = "reconciliation.export_break"
            export_filename = "breaks.csv"

            def export_table(self, queryset): ...   # the header, then a row each
    """

    export_permission: str
    export_filename: str
    # The URL name of the list's export (admin:<name>); by default <app>_<model>_export.
    export_url_name: str = ""
    # How the selected rows are ordered in an export of a selection.
    export_selection_order: tuple[str, ...] = ()

    def export_table(self, queryset: Any) -> Iterator[list[Any]]:
        raise NotImplementedError

    def export_name(self) -> str:
        meta = self.model._meta
        return self.export_url_name or f"{meta.app_label}_{meta.model_name}_export"

    def has_export_permission(self, request: HttpRequest) -> bool:
        return may(request.user, self.export_permission)

    @admin.action(description="Export the selected %(verbose_name_plural)s as CSV", permissions=["export"])
    def export_csv(self, request: HttpRequest, queryset: Any) -> HttpResponseBase:
        if self.export_selection_order:
            queryset = queryset.order_by(*self.export_selection_order)
        return csv_response(self.export_table(queryset), self.export_filename)

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [path("export.csv", wrap(self.export_view), name=self.export_name()), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        query = request.GET.copy()
        query.pop("e", None)
        export_url = reverse(f"admin:{self.export_name()}")
        extra_context = {
            **(extra_context or {}),
            "export_url": export_url + (f"?{query.urlencode()}" if query else ""),
            "can_export": self.has_export_permission(request),
        }
        return super().changelist_view(request, extra_context)

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The list as filtered on the page (same query string), as CSV."""
        if not self.has_export_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            meta = self.model._meta
            return HttpResponseRedirect(
                reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist") + "?e=1"
            )
        return csv_response(self.export_table(changelist.queryset), self.export_filename)
