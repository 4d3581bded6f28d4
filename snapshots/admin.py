from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from revassure.admin_base import AuthenticatedHttpRequest, ReadOnlyAdmin
from revassure.formatting import EMPTY, points, signed
from revassure.refusals import may
from snapshots import services
from snapshots.models import Restore, Snapshot, SnapshotStatus, Verification

REFRESH_SECONDS = 5  # how often a page showing a running snapshot reloads itself
LIVE = (SnapshotStatus.PENDING, SnapshotStatus.RUNNING)
FILES_SHOWN = 50


class StartForm(forms.Form):
    """No fields: the snapshot is of the configured project, into a new directory under SNAPSHOT_DIR."""


class VerificationFilter(admin.SimpleListFilter):
    title = "verification"
    parameter_name = "verification"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return Verification.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Snapshot]) -> QuerySet[Snapshot]:
        if self.value() in Verification.values:
            return queryset.filter(verification=self.value())
        return queryset


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    change_list_template = "admin/snapshots/snapshot/change_list.html"
    change_form_template = "admin/snapshots/snapshot/change_form.html"
    list_display = [
        "id",
        "status_label",
        "progress",
        "verification_label",
        "violations_cell",
        "wallets_cell",
        "entries_cell",
        "project",
        "starter",
        "created_at",
    ]
    list_display_links = ["id", "status_label"]
    list_filter = ["status", VerificationFilter]
    list_select_related = ["started_by"]
    fields = [
        "status_label",
        "project",
        "path",
        "progress",
        "totals",
        "manifest_sha256",
        "verification_label",
        "verified_at",
        "verification_errors_list",
        "violations_table",
        "files_table",
        "managed_export",
        "error",
        "starter",
        "created_at",
        "started_at",
        "finished_at",
    ]
    readonly_fields = cast(list[str], fields)  # the names above, none grouped
    actions = ["verify_again", "take_again"]

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [path("start/", wrap(self.start_view), name="snapshots_start"), *super().get_urls()]

    # -- pages -------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        live = Snapshot.objects.filter(status__in=LIVE).exists()
        context = {"refresh_seconds": REFRESH_SECONDS if live else None, **(extra_context or {})}
        return super().changelist_view(request, context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        snapshot = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if snapshot is not None:
            context.update(
                title=f"Snapshot #{snapshot.pk} of {snapshot.project}",
                snapshot=snapshot,
                refresh_seconds=REFRESH_SECONDS if snapshot.status in LIVE else None,
            )
        return super().change_view(request, object_id, form_url, context)

    def start_view(self, request: AuthenticatedHttpRequest) -> HttpResponse:
        """Take a snapshot of the configured project, in a worker."""
        if not may(request.user, services.PERMISSION):
            raise PermissionDenied("only ops take snapshots")
        form = StartForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            snapshot = services.request_snapshot(actor=request.user)
            self.message_user(request, f"Snapshot {snapshot.pk} queued; its progress shows here.")
            return HttpResponseRedirect(reverse("admin:snapshots_snapshot_change", args=[snapshot.pk]))
        return TemplateResponse(
            request,
            "admin/revassure/form_page.html",
            {
                **self.admin_site.each_context(request),
                "title": "Take a snapshot",
                "intro": (
                    "A worker streams every wallet with its ledger, and this product's own collections, "
                    "into gzip-compressed JSON Lines files with a SHA-256 manifest, then verifies them. "
                    "It reads only; Firestore is not changed. Where a bucket is configured, Firestore's "
                    "managed export is started beside it."
                ),
                "form": form,
                "buttons": [("start", "Take a snapshot")],
                "back_url": reverse("admin:snapshots_snapshot_changelist"),
                "back_label": "Snapshots",
            },
        )

    # -- actions -------------------------------------------------------------------

    def has_take_permission(self, request: HttpRequest) -> bool:
        return may(request.user, services.PERMISSION)

    @admin.action(description="Verify the selected snapshots again", permissions=["take"])
    def verify_again(self, request: HttpRequest, queryset: QuerySet[Snapshot]) -> None:
        done = [services.verify_snapshot(s) for s in queryset.filter(status=SnapshotStatus.COMPLETED)]
        corrupt = [s.pk for s in done if s.verification == Verification.CORRUPT]
        level = messages.ERROR if corrupt else messages.SUCCESS
        text = f"{len(done)} snapshot(s) verified"
        if corrupt:
            text += f"; not intact: {', '.join(f'#{pk}' for pk in corrupt)}"
        self.message_user(request, text + ".", level)

    @admin.action(
        description="Take the selected failed snapshots again (finished files are kept)", permissions=["take"]
    )
    def take_again(self, request: AuthenticatedHttpRequest, queryset: QuerySet[Snapshot]) -> None:
        queued = [
            services.take_again(s, actor=request.user).pk
            for s in queryset.filter(status=SnapshotStatus.FAILED)
        ]
        if not queued:
            self.message_user(request, "Only failed snapshots are taken again.", messages.WARNING)
            return
        self.message_user(request, f"Queued again: {', '.join(f'#{pk}' for pk in queued)}.")

    # -- columns and facts ---------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_label(self, obj: Snapshot) -> str:
        return obj.get_status_display()

    @admin.display(description="progress")
    def progress(self, obj: Snapshot) -> str:
        if obj.status == SnapshotStatus.COMPLETED:
            return f"{points(obj.wallets)} wallets in {obj.seconds:,.1f} s"
        if not obj.wallets_expected:
            return format_html('<span class="ra-progress-text">{} wallets</span>', points(obj.wallets_done))
        return format_html(
            '<progress class="ra-progress" max="{}" value="{}"></progress> '
            '<span class="ra-progress-text">{} of {} wallets</span>',
            obj.wallets_expected,
            min(obj.wallets_done, obj.wallets_expected),
            points(obj.wallets_done),
            points(obj.wallets_expected),
        )

    @admin.display(description="verification", ordering="verification")
    def verification_label(self, obj: Snapshot) -> str:
        css: dict[str, str] = {
            Verification.INTACT: "ra-outcome-applied",
            Verification.CORRUPT: "ra-outcome-failed",
        }
        return format_html(
            '<span class="{}">{}</span>',
            css.get(obj.verification, "ra-muted"),
            obj.get_verification_display(),
        )

    @admin.display(description="violations", ordering="violations_count")
    def violations_cell(self, obj: Snapshot) -> str:
        return points(obj.violations_count)

    @admin.display(description="wallets", ordering="wallets")
    def wallets_cell(self, obj: Snapshot) -> str:
        return points(obj.wallets)

    @admin.display(description="ledger entries", ordering="entries")
    def entries_cell(self, obj: Snapshot) -> str:
        return points(obj.entries)

    @admin.display(description="started by", ordering="started_by__username")
    def starter(self, obj: Snapshot) -> str:
        return obj.started_by.get_username() if obj.started_by else "the system (a command)"

    @admin.display(description="totals")
    def totals(self, obj: Snapshot) -> str:
        if obj.wallets is None:
            return EMPTY
        rows = [
            ("Wallets", points(obj.wallets)),
            ("Ledger entries", points(obj.entries)),
            ("Documents", points(obj.documents)),
            ("Sum of wallet points", points(obj.points_total)),
            ("Sum of ledger amounts", points(obj.ledger_total)),
        ]
        return format_html(
            '<table class="ra-facts" id="snapshot-totals">{}</table>',
            format_html_join("", '<tr><th>{}</th><td class="numeric">{}</td></tr>', rows),
        )

    @admin.display(description="verification problems")
    def verification_errors_list(self, obj: Snapshot) -> str:
        if not obj.verification_errors:
            return EMPTY
        return format_html(
            '<ul id="verification-errors">{}</ul>',
            format_html_join("", "<li>{}</li>", ((error,) for error in obj.verification_errors)),
        )

    @admin.display(description="wallets differing from their ledger")
    def violations_table(self, obj: Snapshot) -> str:
        if not obj.violations:
            return "None" if obj.violations_count == 0 else EMPTY
        rows = [
            (v["uid"], points(v["wallet_points"]), points(v["ledger_sum"]), signed(v["delta"]), v["reason"])
            for v in obj.violations
        ]
        shown = (
            ""
            if obj.violations_count == len(rows)
            else f"The first {len(rows)} of {points(obj.violations_count)}."
        )
        return format_html(
            '<table class="ra-facts" id="snapshot-violations"><tr><th>uid</th><th>points</th>'
            "<th>ledger sum</th><th>delta</th><th>why</th></tr>{}</table>{}",
            format_html_join(
                "",
                '<tr><td><code>{}</code></td><td class="numeric">{}</td><td class="numeric">{}</td>'
                '<td class="numeric">{}</td><td>{}</td></tr>',
                rows,
            ),
            shown,
        )

    @admin.display(description="files (manifest)")
    def files_table(self, obj: Snapshot) -> str:
        entries = (obj.manifest or {}).get("files", [])
        if not entries:
            return EMPTY
        rows = [
            (e["name"], points(e["lines"]), points(e["bytes"]), e["sha256"][:16] + "…")
            for e in entries[:FILES_SHOWN]
        ]
        more = f"… and {len(entries) - FILES_SHOWN} more files." if len(entries) > FILES_SHOWN else ""
        return format_html(
            '<table class="ra-facts" id="snapshot-files"><tr><th>file</th><th>lines</th><th>bytes</th>'
            "<th>SHA-256</th></tr>{}</table>{}",
            format_html_join(
                "",
                '<tr><td><code>{}</code></td><td class="numeric">{}</td><td class="numeric">{}</td>'
                "<td><code>{}</code></td></tr>",
                rows,
            ),
            more,
        )

    @admin.display(description="managed export")
    def managed_export(self, obj: Snapshot) -> str:
        if not obj.managed_export_state:
            return "Not requested (no SNAPSHOT_BUCKET)"
        if obj.managed_export_operation:
            return format_html("{} (<code>{}</code>)", obj.managed_export_state, obj.managed_export_operation)
        return obj.managed_export_state


@admin.register(Restore)
class RestoreAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "project",
        "outcome",
        "written_display",
        "deleted_display",
        "replace",
        "starter",
        "started_at",
    ]
    list_filter = ["refused", "replace"]
    list_select_related = ["started_by"]
    fields = [
        "project",
        "path",
        "outcome",
        "replace",
        "deleted_display",
        "written_display",
        "error",
        "starter",
        "started_at",
        "finished_at",
    ]
    readonly_fields = cast(list[str], fields)  # the names above, none grouped

    @admin.display(description="outcome")
    def outcome(self, obj: Restore) -> str:
        if obj.refused:
            return "Refused, nothing written"
        if obj.error:
            return "Failed part-way"
        return "Restored" if obj.finished_at else "Running"

    @admin.display(description="started by", ordering="started_by__username")
    def starter(self, obj: Restore) -> str:
        return obj.started_by.get_username() if obj.started_by else "the system (a command)"

    @admin.display(description="written", ordering="written")
    def written_display(self, obj: Restore) -> str:
        return points(obj.written)

    @admin.display(description="deleted", ordering="deleted")
    def deleted_display(self, obj: Restore) -> str:
        return points(obj.deleted)
