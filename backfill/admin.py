from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from backfill import completeness, runs
from backfill.models import DataMigration, MigrationStatus, ProviderEventDelivery
from revassure.admin_base import ReadOnlyAdmin
from revassure.firestore import get_gateway
from revassure.flags import FeatureDisabled


class UploadForm(forms.Form):
    export = forms.FileField(label="JSON Lines export of provider events")
    dry_run = forms.BooleanField(
        required=False, initial=True, help_text="Plan only: write nothing to Firestore."
    )


@admin.register(DataMigration)
class DataMigrationAdmin(ReadOnlyAdmin):
    change_list_template = "admin/backfill/datamigration/change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view(self.upload_view)
        return [path("upload/", view, name="backfill_upload"), *super().get_urls()]

    def upload_view(self, request):
        """Replay an uploaded export (as `replay_webhooks` does), in a worker."""
        if not request.user.has_perm("backfill.change_datamigration"):
            raise PermissionDenied
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                migration = runs.request_file_replay(
                    form.cleaned_data["export"], dry_run=form.cleaned_data["dry_run"], actor=request.user
                )
            except FeatureDisabled as exc:
                form.add_error(None, f"Backfill refused: {exc}")
            else:
                kind = "Dry run" if migration.dry_run else "Replay"
                self.message_user(request, f"{kind} {migration.pk} queued; watch its progress here.")
                return HttpResponseRedirect(reverse("admin:backfill_datamigration_changelist"))
        return TemplateResponse(
            request,
            "admin/revassure/form_page.html",
            {
                **self.admin_site.each_context(request),
                "title": "Replay an export",
                "intro": "Each event is stored raw, then applied once; a dry run only plans.",
                "form": form,
                "multipart": True,
                "buttons": [("upload", "Start")],
                "back_url": reverse("admin:backfill_datamigration_changelist"),
                "back_label": "Data migrations",
            },
        )

    list_display = [
        "id",
        "kind",
        "status",
        "dry_run",
        "progress",
        "rate",
        "eta",
        "applied",
        "duplicate",
        "deferred",
        "quarantined",
        "failed",
        "started_by",
        "created_at",
    ]
    list_filter = ["status", "kind", "source", "dry_run"]
    list_select_related = ["started_by"]
    readonly_fields = [
        "kind",
        "source",
        "status",
        "dry_run",
        "parameters",
        "started_by",
        "progress",
        "rate",
        "eta",
        "total",
        "processed",
        "applied",
        "duplicate",
        "deferred",
        "quarantined",
        "failed",
        "checkpoint",
        "plan_checksum",
        "plan",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    ]
    actions = ["pause", "resume", "cancel", "rerun_quarantined_and_failed"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(items=Count("deliveries"))

    @admin.display(description="progress")
    def progress(self, obj):
        expected = obj.parameters.get("expected") or max(obj.total, obj.processed, 1)
        return format_html(
            '<progress max="{}" value="{}"></progress> {} handled', expected, obj.processed, obj.processed
        )

    def _elapsed(self, obj):
        if not obj.started_at:
            return None
        return ((obj.finished_at or timezone.now()) - obj.started_at).total_seconds()

    @admin.display(description="rate")
    def rate(self, obj):
        elapsed = self._elapsed(obj)
        return f"{obj.processed / elapsed:.0f}/s" if elapsed and obj.processed else "-"

    @admin.display(description="time left")
    def eta(self, obj):
        elapsed, expected = self._elapsed(obj), obj.parameters.get("expected")
        if obj.status != MigrationStatus.RUNNING or not elapsed or not obj.processed or not expected:
            return "-"
        return f"{(expected - obj.processed) / (obj.processed / elapsed):.0f} s"

    def has_control_permission(self, request):
        return request.user.has_perm("backfill.change_datamigration")

    def _control(self, request, queryset, action):
        for migration in queryset:
            try:
                runs.set_status(migration.pk, action, actor=request.user)
            except (ValueError, PermissionError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"Migration {migration.pk}: {action} done.", messages.SUCCESS)

    @admin.action(description="Pause the selected migrations", permissions=["control"])
    def pause(self, request, queryset):
        self._control(request, queryset, "pause")

    @admin.action(description="Resume the selected migrations", permissions=["control"])
    def resume(self, request, queryset):
        self._control(request, queryset, "resume")

    @admin.action(description="Cancel the selected migrations", permissions=["control"])
    def cancel(self, request, queryset):
        self._control(request, queryset, "cancel")

    @admin.action(description="Re-run quarantined and failed events (after a fix)", permissions=["control"])
    def rerun_quarantined_and_failed(self, request, queryset):
        try:
            migration = runs.request_stored_replay(actor=request.user, include_quarantined=True)
        except FeatureDisabled as exc:
            self.message_user(request, f"Backfill refused: {exc}.", messages.ERROR)
            return
        self.message_user(request, f"Migration {migration.pk} queued: it re-applies what is not applied yet.")


@admin.register(ProviderEventDelivery)
class ProviderEventDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "received_at",
        "source",
        "event_id",
        "event_type",
        "user_id",
        "status",
        "reason",
        "migration",
    ]
    list_filter = ["status", "source", "event_type"]
    list_select_related = ["migration"]
    search_fields = ["=event_id", "=user_id", "=entry_id"]
    readonly_fields = [
        "received_at",
        "source",
        "event_id",
        "event_type",
        "user_id",
        "entry_id",
        "status",
        "reason",
        "attempts",
        "applied_at",
        "migration",
        "line",
        "raw",
    ]

    change_list_template = "admin/backfill/providereventdelivery/change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view(self.completeness_view)
        return [path("completeness/", view, name="backfill_completeness"), *super().get_urls()]

    def completeness_view(self, request):
        """The stored events without a ledger entry, and one button to replay them all."""
        if not request.user.has_perm("backfill.view_providereventdelivery"):
            raise PermissionDenied
        gateway = get_gateway()
        if request.method == "POST":
            if not request.user.has_perm("backfill.change_datamigration"):
                raise PermissionDenied
            try:
                gaps, migration = completeness.replay_gaps(gateway, actor=request.user)
            except FeatureDisabled as exc:
                self.message_user(request, f"Backfill refused: {exc}.", messages.ERROR)
                return HttpResponseRedirect(reverse("admin:backfill_completeness"))
            self.message_user(
                request, f"{len(gaps)} gap(s) put back in line; migration {migration.pk} replays them."
            )
            return HttpResponseRedirect(reverse("admin:backfill_datamigration_changelist"))
        found = completeness.check(gateway)
        gaps = found.gaps
        facts = [
            (f"{g.user_id} / {g.entry_id}", f"{g.status}: {g.reason or '-'} (event {g.event_id})")
            for g in gaps
        ] + [
            (d["entry_id"], f"credited to {len(d['wallets'])} wallets: {', '.join(d['wallets'])}")
            for d in found.doubles
        ]
        can_replay = bool(gaps) and request.user.has_perm("backfill.change_datamigration")
        return TemplateResponse(
            request,
            "admin/revassure/form_page.html",
            {
                **self.admin_site.each_context(request),
                "title": "Completeness of the ledger",
                "intro": (
                    f"{len(gaps)} stored payment(s) or reversal(s) have no ledger entry."
                    if gaps
                    else "Every stored payment and reversal has its ledger entry."
                )
                + (
                    f" {len(found.doubles)} payment(s) or reversal(s) are credited to more than one "
                    "wallet: reverse the extra credits with a manual adjustment."
                    if found.doubles
                    else ""
                ),
                "facts": facts,
                "form": forms.Form(),
                "buttons": [("replay", "Replay all gaps")] if can_replay else [],
                "back_url": reverse("admin:backfill_providereventdelivery_changelist"),
                "back_label": "Provider events",
            },
        )
