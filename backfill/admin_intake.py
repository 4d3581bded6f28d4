"""The admin of what the webhook intake received: provider event deliveries
(with how many wait for a worker above the list, and the completeness page,
admin_start.py) and the webhook requests refused for their signature.
Registered through backfill.admin, which Django's autodiscovery imports."""

from typing import Any, cast

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, reverse
from django.utils.html import format_html

from backfill import drain
from backfill.admin_migration_page import REFRESH_SECONDS
from backfill.admin_start import CompletenessPage
from backfill.models import ProviderEventDelivery, RejectedWebhook
from revassure.admin_base import ReadOnlyAdmin
from revassure.formatting import EMPTY, label, size, when


@admin.register(ProviderEventDelivery)
class ProviderEventDeliveryAdmin(CompletenessPage, ReadOnlyAdmin):
    list_display = [
        "id",
        "received",
        "source_label",
        "event_id",
        "type_label",
        "user_id",
        "status_label",
        "reason",
        "migration_link",
    ]
    list_filter = ["status", "source", "event_type"]
    list_select_related = ["migration"]
    search_fields = ["=event_id", "=user_id", "=entry_id"]
    search_help_text = "Exact event id, wallet uid or ledger entry id"
    fields = [
        "received",
        "source_label",
        "event_id",
        "type_label",
        "user_id",
        "entry_id",
        "status_label",
        "reason",
        "attempts",
        "applied",
        "migration_link",
        "line",
        "raw_body",
    ]
    readonly_fields = cast(list[str], fields)  # the names above, none grouped

    change_list_template = "admin/backfill/providereventdelivery/change_list.html"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Above the list: the webhook deliveries waiting for a worker and how
        long the oldest has waited (the page reloads while any wait)."""
        count, oldest = drain.queue_state()
        context = {
            "waiting": count,
            "oldest_wait": waited(oldest),
            "refresh_seconds": REFRESH_SECONDS if count else None,
            **(extra_context or {}),
        }
        return super().changelist_view(request, context)

    @admin.display(description="received", ordering="received_at")
    def received(self, obj: ProviderEventDelivery) -> str:
        return when(obj.received_at)

    @admin.display(description="applied")
    def applied(self, obj: ProviderEventDelivery) -> str:
        return when(obj.applied_at)

    @admin.display(description="source", ordering="source")
    def source_label(self, obj: ProviderEventDelivery) -> str:
        return obj.get_source_display()

    @admin.display(description="type", ordering="event_type")
    def type_label(self, obj: ProviderEventDelivery) -> str:
        return label(obj.event_type) if obj.event_type else EMPTY

    @admin.display(description="status", ordering="status")
    def status_label(self, obj: ProviderEventDelivery) -> str:
        return obj.get_status_display()

    @admin.display(description="migration", ordering="migration")
    def migration_link(self, obj: ProviderEventDelivery) -> str:
        if obj.migration_id is None:
            return EMPTY
        url = reverse("admin:backfill_datamigration_change", args=[obj.migration_id])
        return format_html('<a href="{}">#{}</a>', url, obj.migration_id)

    @admin.display(description="body as received")
    def raw_body(self, obj: ProviderEventDelivery) -> str:
        return format_html('<pre class="ra-raw">{}</pre>', obj.raw)

    def get_urls(self) -> list[URLPattern]:
        return [*self.completeness_urls(), *super().get_urls()]


@admin.register(RejectedWebhook)
class RejectedWebhookAdmin(ReadOnlyAdmin):
    """Webhook requests refused for their signature: when, from where, why."""

    list_display = ["received", "reason", "remote_addr", "body_size"]
    list_filter = ["reason"]
    search_fields = ["=remote_addr", "=body_sha256"]
    search_help_text = "Exact sender address or SHA-256 of the body"
    fields = ["received", "reason", "remote_addr", "body_size", "body_sha256"]
    readonly_fields = cast(list[str], fields)  # the names above, none grouped
    date_hierarchy = "received_at"

    @admin.display(description="received", ordering="received_at")
    def received(self, obj: RejectedWebhook) -> str:
        return when(obj.received_at)

    @admin.display(description="body size", ordering="body_bytes")
    def body_size(self, obj: RejectedWebhook) -> str:
        return size(obj.body_bytes)


def waited(seconds: float) -> str:
    """A wait as people say it: 4 s, 3 min 20 s, 2 h 5 min, 3 days 4 h."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''} {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"
