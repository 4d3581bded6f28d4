"""The admin pages that start a data migration: replaying an uploaded export,
backfilling reversals from finance's CSV, re-running the stored events not
applied yet, and replaying the gaps the completeness check finds.

Each is one form page (`form_page`). The three started from Data migrations go
one way (`StartPages.start_page`): ops only, the service's refusal shown on the
form, the migration started opened on its page. DataMigrationAdmin mixes in
StartPages, ProviderEventDeliveryAdmin CompletenessPage (admin.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from backfill import completeness, plan_approval, reversals, run_requests, runs
from backfill.models import DataMigration, EventStatus, MigrationKind
from backfill.uploads import BadUpload
from revassure.admin_base import AuthenticatedHttpRequest
from revassure.firestore import get_gateway
from revassure.flags import FeatureDisabled
from revassure.formatting import EMPTY, points
from revassure.refusals import may

FORM_PAGE = "admin/revassure/form_page.html"


def dry_run_field(each: str) -> forms.BooleanField:
    """The "Dry run" box, ticked at first; `each` names what the plan lists."""
    return forms.BooleanField(
        required=False,
        initial=True,
        label="Dry run",
        help_text=f"Plan only: every {each} with its outcome and reason, nothing written to Firestore.",
    )


class ExportUploadForm(forms.Form):
    export = forms.FileField(
        label="Export file",
        help_text="JSON Lines: one provider event (a JSON object) per line, as PayNow exports them.",
    )
    dry_run = dry_run_field("line")


class ReversalUploadForm(forms.Form):
    export = forms.FileField(
        label="Reversal CSV",
        help_text=f"Finance's export with the columns {','.join(reversals.COLUMNS)}.",
    )
    dry_run = dry_run_field("row")


class RerunForm(forms.Form):
    dry_run = dry_run_field("event")


def form_page(model_admin: admin.ModelAdmin, request: HttpRequest, **context: Any) -> TemplateResponse:
    """One of these pages: the admin's form page with `context` (title, intro,
    form, buttons, back_url and back_label; facts, multipart)."""
    return TemplateResponse(request, FORM_PAGE, {**model_admin.admin_site.each_context(request), **context})


if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin  # the pages are mixed into the admins of admin.py
else:
    _AdminBase = object


class StartPages(_AdminBase):
    """Uploads and the re-run of stored events (a mixin of DataMigrationAdmin)."""

    def start_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("upload/", wrap(self.upload_view), name="backfill_upload"),
            path("upload-reversals/", wrap(self.upload_reversals_view), name="backfill_upload_reversals"),
            path("rerun-stored/", wrap(self.rerun_stored_view), name="backfill_rerun_stored"),
        ]

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        """Replay an uploaded export (as `replay_webhooks` does), in a worker."""
        return self.start_page(
            request,
            ExportUploadForm(request.POST or None, request.FILES or None),
            self._file_replay(MigrationKind.REPLAY_FILE),
            real_run="Replay",
            title="Replay an export",
            intro=(
                "Each event is stored raw, then applied once. Start with a dry run: it lists every line "
                "with its outcome and reason and writes nothing; its page then offers to run it for "
                "real, bound to that plan."
            ),
            button=("upload", "Start"),
            multipart=True,
        )

    def upload_reversals_view(self, request: HttpRequest) -> HttpResponse:
        """Backfill reversals from finance's CSV (as `backfill_reversals` does), in a worker."""
        return self.start_page(
            request,
            ReversalUploadForm(request.POST or None, request.FILES or None),
            self._file_replay(MigrationKind.REVERSAL_CSV),
            real_run="Replay",
            title="Backfill reversals from a CSV",
            intro=(
                "Each row becomes a refund or a chargeback and goes through the replay's rules: applied "
                "once, after its payment, never beyond it. Rows that cannot be read are quarantined "
                "with the reason. Start with a dry run."
            ),
            button=("upload", "Start"),
            multipart=True,
        )

    def rerun_stored_view(self, request: HttpRequest) -> HttpResponse:
        """Re-run the stored events not applied yet, quarantined and failed ones
        included (after a fix): a dry run first, as for a file."""
        waiting = run_requests.stored_deliveries(
            {"statuses": [*run_requests.REPLAYABLE, EventStatus.QUARANTINED]}
        ).count()
        return self.start_page(
            request,
            RerunForm(request.POST if request.method == "POST" else None),  # unticked: an empty POST
            lambda data, actor: run_requests.request_stored_replay(
                actor=actor, include_quarantined=True, dry_run=data["dry_run"]
            ),
            real_run="Re-run",
            title="Re-run stored events",
            intro=(
                f"{points(waiting)} stored event(s) are not applied (received, deferred, failed or "
                "quarantined). Fix what quarantined them first (a missing wallet, the provider's data); "
                "each is applied once, by the webhook's rules. Start with a dry run: its page lists "
                "each event with its outcome and offers the real run, bound to that plan."
            ),
            button=("rerun", "Start"),
        )

    @staticmethod
    def _file_replay(kind: str) -> Callable[[dict, Any], DataMigration]:
        def start(data: dict, actor) -> DataMigration:
            return run_requests.request_file_replay(
                data["export"], dry_run=data["dry_run"], actor=actor, kind=kind
            )

        return start

    def start_page(
        self,
        request: HttpRequest,
        form: forms.Form,
        start: Callable[[dict, Any], DataMigration],
        *,
        real_run: str,
        title: str,
        intro: str,
        button: tuple[str, str],
        multipart: bool = False,
    ) -> HttpResponse:
        """The page that starts a migration: ops only; a valid form is handed to
        `start` (the service), whose refusal is shown on the form; the migration
        started is opened on its page, where its progress shows."""
        if not may(request.user, runs.PERMISSION):
            raise PermissionDenied("only ops start backfills")
        if request.method == "POST" and form.is_valid():
            try:
                migration = start(form.cleaned_data, request.user)
            except BadUpload as exc:
                form.add_error("export", f"Refused: {exc}.")
            except plan_approval.PlanRequired as exc:
                form.add_error("dry_run", f"Refused: {exc}.")
            except FeatureDisabled as exc:
                form.add_error(None, f"Backfill refused: {exc}")
            else:
                what = "Dry run" if migration.dry_run else real_run
                self.message_user(request, f"{what} {migration.pk} queued; its progress shows here.")
                return HttpResponseRedirect(
                    reverse("admin:backfill_datamigration_change", args=[migration.pk])
                )
        return form_page(
            self,
            request,
            title=title,
            intro=intro,
            form=form,
            multipart=multipart,
            buttons=[button],
            back_url=reverse("admin:backfill_datamigration_changelist"),
            back_label="Data migrations",
        )


class CompletenessPage(_AdminBase):
    """The completeness check's page (a mixin of ProviderEventDeliveryAdmin)."""

    def completeness_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.completeness_view)
        return [path("completeness/", view, name="backfill_completeness")]

    def completeness_view(self, request: AuthenticatedHttpRequest) -> HttpResponse:
        """The stored events without a ledger entry, and one button to replay them all."""
        if not may(request.user, "backfill.view_providereventdelivery"):
            raise PermissionDenied("your role does not include the provider events")
        gateway = get_gateway()
        if request.method == "POST":
            if not may(request.user, runs.PERMISSION):
                raise PermissionDenied("only ops replay gaps")
            try:
                gaps, migration = completeness.replay_gaps(gateway, actor=request.user)
            except FeatureDisabled as exc:
                self.message_user(request, f"Backfill refused: {exc}.", messages.ERROR)
                return HttpResponseRedirect(reverse("admin:backfill_completeness"))
            if migration.dry_run:
                self.message_user(
                    request,
                    f"{len(gaps)} gap(s) put back in line; they name more points than one person replays "
                    f"alone (BACKFILL_PLAN_APPROVAL_ABOVE): dry run {migration.pk} plans their replay, "
                    "writing nothing, for a second person to approve.",
                    messages.WARNING,
                )
            else:
                self.message_user(
                    request, f"{len(gaps)} gap(s) put back in line; migration {migration.pk} replays them."
                )
            return HttpResponseRedirect(reverse("admin:backfill_datamigration_change", args=[migration.pk]))
        found = completeness.check(gateway)
        gaps = found.gaps
        facts = [
            (
                f"{g.user_id} / {g.entry_id}",
                f"{g.get_status_display()}: {g.reason or EMPTY} (event {g.event_id})",
            )
            for g in gaps
        ] + [
            (d["entry_id"], f"credited to {len(d['wallets'])} wallets: {', '.join(d['wallets'])}")
            for d in found.doubles
        ]
        can_replay = bool(gaps) and may(request.user, runs.PERMISSION)
        return form_page(
            self,
            request,
            title="Completeness of the ledger",
            intro=(
                f"{points(len(gaps))} stored payment(s) or reversal(s) have no ledger entry."
                if gaps
                else "Every stored payment and reversal has its ledger entry."
            )
            + (
                f" {points(len(found.doubles))} payment(s) or reversal(s) are credited to more than one "
                "wallet: reverse the extra credits with a manual adjustment."
                if found.doubles
                else ""
            ),
            facts=facts,
            form=forms.Form(),
            buttons=[("replay", "Replay all gaps")] if can_replay else [],
            back_url=reverse("admin:backfill_providereventdelivery_changelist"),
            back_label="Provider events",
        )
