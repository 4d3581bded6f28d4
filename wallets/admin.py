"""The wallet page (`admin:wallet_lookup`, GET ?uid=...): a wallet's balance and
ledger sum read live through the gateway, its ledger newest first with who
wrote each entry of ours, its violations, balance requests and provider-event
deliveries, and the actions the viewer's role may take from there.

Anyone who may view violations (reviewers, approvers, ops) may look; anyone
else gets the styled 403. The actions offered are those the services would
accept now (role, freeze, what can be healed); they still refuse on their own.
"""

from django.contrib import admin
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.http import urlencode

from backfill.models import ProviderEventDelivery
from reconciliation import break_age, change_queries
from reconciliation.models import BalanceRequest, Break, Violation
from revassure import freeze
from revassure.admin_base import BaseAdmin
from revassure.firestore import MISSING, FirestoreError, WalletState, get_gateway
from revassure.formatting import EMPTY, label, points, signed, when
from revassure.ledger import is_points
from revassure.models import FreezeEvent
from revassure.refusals import may
from wallets import lookup
from wallets.models import Wallet

VIEW_PERMISSION = "reconciliation.view_violation"
PROPOSE_PERMISSION = "reconciliation.propose_balancerequest"
TEMPLATE = "admin/wallets/wallet_lookup.html"
WRITER_LABELS = {
    "replay": "Replay",
    "webhook": "Webhook",
    "reversal": "Reversal",
    "heal": "Heal",
    "adjustment": "Manual adjustment",
    "correction": "Correction",
}


def valid_uid(uid: str) -> bool:
    """A uid that can name a Firestore document (no path, not . or .., not too long)."""
    return bool(uid) and "/" not in uid and uid not in (".", "..") and len(uid.encode()) <= 1500


@admin.register(Wallet)
class WalletAdmin(BaseAdmin):
    def has_module_permission(self, request: HttpRequest) -> bool:
        return may(request.user, VIEW_PERMISSION)

    def has_view_permission(self, request: HttpRequest, obj: Wallet | None = None) -> bool:
        return may(request.user, VIEW_PERMISSION)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Wallet | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Wallet | None = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        # The page is the model's only view; its changelist name makes the
        # admin index and menu link to it.
        view = self.admin_site.admin_view(self.lookup_view)
        return [
            path("", view, name="wallet_lookup"),
            path("", view, name="wallets_wallet_changelist"),
        ]

    def lookup_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        uid = request.GET.get("uid", "").strip()
        context = {
            **self.admin_site.each_context(request),
            "title": f"Wallet {uid}" if uid else "Wallet lookup",
            "uid": uid,
        }
        if uid and not valid_uid(uid):
            context["invalid"] = True
        elif uid:
            context.update(self.wallet_context(request, uid))
        return TemplateResponse(request, TEMPLATE, context)

    def wallet_context(self, request: HttpRequest, uid: str) -> dict:
        user = request.user
        context: dict = {"firestore_error": ""}
        state = None
        try:
            gateway = get_gateway()
            state = lookup.wallet_now(gateway, uid)
            ledger = lookup.ledger_page(gateway, uid, request.GET.get("page"))
        except FirestoreError as exc:
            context["firestore_error"] = (
                f"Firestore did not answer ({exc}): balance and ledger cannot be shown now."
            )
        else:
            page = ledger.page
            context.update(
                balance(state),
                unknown=not state.exists,
                ledger=ledger_rows(page, ledger.corrected),
                page=page,
            )
            context.update(page_urls=page_urls(uid, page), malformed_entries=ledger.malformed)
        awaiting = set(change_queries.awaiting(user).filter(uid=uid).values_list("pk", flat=True))
        violations = lookup.violations(uid)
        requests = lookup.requests(uid)
        deliveries = lookup.deliveries(uid)
        if may(user, "reconciliation.view_break"):
            episodes = lookup.breaks(uid)
            context.update(
                breaks=[break_row(b) for b in episodes[: lookup.RECENT]],
                breaks_count=episodes.count(),
                breaks_url=reverse("admin:reconciliation_break_changelist") + "?" + urlencode({"q": uid}),
            )
        context.update(
            violations=[violation_row(v, heal) for v, heal in violations],
            requests=[request_row(r, r.pk in awaiting) for r in requests[: lookup.RECENT]],
            requests_count=requests.count(),
            requests_url=reverse("admin:reconciliation_balancerequest_changelist")
            + "?"
            + urlencode({"q": uid}),
            deliveries=[delivery_row(d) for d in deliveries[: lookup.RECENT]],
            deliveries_count=deliveries.count(),
            deliveries_url=reverse("admin:backfill_providereventdelivery_changelist")
            + "?"
            + urlencode({"q": uid}),
            violations_url=reverse("admin:reconciliation_violation_changelist")
            + "?"
            + urlencode({"run__id__exact": "all", "q": uid}),
            actions=actions(user, uid, state, awaiting),
        )
        return context


def balance(state: WalletState) -> dict:
    """The wallet's balance, ledger sum, entry count and drift, formatted."""
    if not state.exists:
        return {}
    drift = EMPTY
    if is_points(state.points) and is_points(state.ledger.total):
        difference = state.points - state.ledger.total
        drift = "In balance" if difference == 0 else signed(difference)
    return {
        "balance": "missing" if state.points is MISSING else points(state.points),
        "ledger_sum": points(state.ledger.total),
        "entry_count": points(state.ledger.count),
        "drift": drift,
        "drifted": drift not in (EMPTY, "In balance"),
        "malformed": not (is_points(state.points) and is_points(state.ledger.total)),
    }


def ledger_rows(page: Page, corrected: dict[str, str]) -> list[dict]:
    entries = list(page.object_list)
    written = lookup.writers(entries)
    rows = []
    for entry in entries:
        amount = entry.amount
        rows.append(
            {
                "id": entry.entry_id,
                "when": when(entry.created_at) if entry.created_at else _raw(entry.fields.get("createdAt")),
                "type": label(entry.fields.get("type")),
                "amount": signed(amount) if is_points(amount) else _raw(amount),
                "malformed": not is_points(amount) and entry.entry_id not in corrected,
                "corrected_by": corrected.get(entry.entry_id, ""),
                "writer": writer_cell(written.get(entry.entry_id)),
            }
        )
    return rows


def _raw(value) -> str:
    return "missing" if value is None else repr(value)


def writer_cell(writer: lookup.Writer | None) -> dict:
    """Who wrote an entry, as a label and links: the delivery and its migration,
    or the balance request; the points app's own entries are not ours."""
    if writer is None:
        return {"label": "Points app", "links": []}
    links = []
    if writer.delivery is not None:
        delivery = writer.delivery
        links.append(
            (
                f"delivery #{delivery.pk}",
                reverse("admin:backfill_providereventdelivery_change", args=[delivery.pk]),
            )
        )
        if delivery.migration_id:
            assert delivery.migration is not None  # it has a migration id
            links.append(
                (
                    f"migration #{delivery.migration_id} ({delivery.migration.get_kind_display()})",
                    reverse("admin:backfill_datamigration_change", args=[delivery.migration_id]),
                )
            )
    if writer.request is not None:
        links.append(
            (
                f"request #{writer.request.pk}",
                reverse("admin:reconciliation_balancerequest_change", args=[writer.request.pk]),
            )
        )
    return {"label": WRITER_LABELS[writer.kind], "links": links}


def page_urls(uid: str, page: Page) -> dict:
    def url(number):
        return reverse("admin:wallet_lookup") + "?" + urlencode({"uid": uid, "page": number})

    return {
        "newer": url(page.previous_page_number()) if page.has_previous() else None,
        "older": url(page.next_page_number()) if page.has_next() else None,
    }


def violation_row(violation: Violation, heal: BalanceRequest | None) -> dict:
    return {
        "url": reverse("admin:reconciliation_violation_change", args=[violation.pk]),
        "run": violation.run_id,
        "run_url": reverse("admin:reconciliation_reconciliationrun_change", args=[violation.run_id]),
        "when": when(violation.run.finished_at),
        "kind": violation.get_kind_display(),
        "delta": signed(violation.delta),
        "heal": f"{heal.title} {heal.get_state_display().lower()}" if heal else EMPTY,
        "heal_url": reverse("admin:reconciliation_balancerequest_change", args=[heal.pk]) if heal else None,
    }


def break_row(brk: Break) -> dict:
    return {
        "id": brk.pk,
        "url": reverse("admin:reconciliation_break_change", args=[brk.pk]),
        "status": brk.get_status_display().capitalize(),
        "resolution": brk.get_resolution_display() if brk.resolution else "",
        "kind": brk.get_kind_display(),
        "delta": signed(brk.delta),
        "first_seen": when(brk.first_seen),
        "last_seen": when(brk.last_seen),
        "age_days": break_age.age_days(brk),
        "owner": brk.owner or EMPTY,
        "cause": brk.cause_text or EMPTY,
    }


def request_row(request: BalanceRequest, decidable: bool) -> dict:
    return {
        "id": request.pk,
        "url": reverse("admin:reconciliation_balancerequest_change", args=[request.pk]),
        "kind": request.get_kind_display().capitalize(),
        "amount": signed(request.amount),
        "state": request.get_state_display(),
        "proposed": f"{when(request.created_at)} by {request.proposed_by}",
        "decide_url": (
            reverse("admin:reconciliation_balancerequest_decide", args=[request.pk]) if decidable else None
        ),
    }


def delivery_row(delivery: ProviderEventDelivery) -> dict:
    return {
        "id": delivery.pk,
        "url": reverse("admin:backfill_providereventdelivery_change", args=[delivery.pk]),
        "when": when(delivery.received_at),
        "event": f"{label(delivery.event_type)} {delivery.event_id}".strip() or EMPTY,
        "source": delivery.get_source_display().capitalize(),
        "status": delivery.get_status_display().capitalize(),
        "reason": delivery.reason,
        "migration": delivery.migration_id,
        "migration_url": (
            reverse("admin:backfill_datamigration_change", args=[delivery.migration_id])
            if delivery.migration_id
            else None
        ),
    }


def actions(
    user: User | AnonymousUser, uid: str, state: WalletState | None, awaiting: set[int]
) -> list[dict]:
    """What this viewer may do from the page, or why not: each is a link, a
    button (a form posting the violation list's heal action) or a sentence."""
    found = []
    event = freeze.current()
    if may(user, PROPOSE_PERMISSION):
        found.append(adjustment_action(uid, state, event))
        found.append(heal_action(uid, event))
    for request_id in sorted(awaiting):
        found.append(
            {
                "id": f"wallet-decide-{request_id}",
                "kind": "link",
                "label": f"Decide request #{request_id}",
                "url": reverse("admin:reconciliation_balancerequest_decide", args=[request_id]),
                "css": "decide-link",
            }
        )
    if may(user, "reconciliation.approve_balancerequest") and not awaiting:
        found.append(
            {"id": "wallet-nothing-to-decide", "kind": "text", "label": "Nothing awaits your decision."}
        )
    return found


def adjustment_action(uid: str, state: WalletState | None, event: FreezeEvent | None) -> dict:
    action = {"id": "wallet-propose-adjustment", "kind": "text"}
    if event is not None:
        return {
            **action,
            "label": f"Adjustments are frozen since {when(event.created_at)}: {sentence(event.reason)}",
        }
    if state is not None and not state.exists:
        return {**action, "label": "No adjustment: there is no such wallet in Firestore."}
    url = reverse("admin:reconciliation_balancerequest_propose") + "?" + urlencode({"uid": uid})
    return {**action, "kind": "link", "label": "Propose an adjustment", "url": url}


def heal_action(uid: str, event: FreezeEvent | None) -> dict:
    action = {"id": "wallet-propose-heal", "kind": "text"}
    violation = lookup.current_violation(uid)
    if violation is None:
        return {
            **action,
            "id": "wallet-no-violation",
            "label": "No heal: the latest run that checked this wallet found no violation.",
        }
    if event is not None:
        return {
            **action,
            "label": f"Heals are frozen since {when(event.created_at)}: {sentence(event.reason)}",
        }
    refusal = change_queries.heal_refusal(
        violation, change_queries.blocking_heals([violation]).get(violation.pk)
    )
    if refusal:
        return {**action, "label": f"No heal for run {violation.run_id}'s violation: {refusal}."}
    return {
        **action,
        "kind": "heal",
        "label": f"Propose a heal of run {violation.run_id}'s violation ({signed(violation.delta)})",
        "url": reverse("admin:reconciliation_violation_changelist") + "?run__id__exact=all",
        "violation": violation.pk,
    }


def sentence(text: str) -> str:
    """A reason someone typed, ending with one full stop whether or not they typed it."""
    return text.rstrip().rstrip(".") + "."
