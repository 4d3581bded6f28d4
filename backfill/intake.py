"""Provider events in: every delivery stored raw before anything is applied,
the webhook's own (signed, answered at once, one insert each) and a replay's
(many lines in one insert). Applying them is backfill.services'."""

from __future__ import annotations

import functools
import hashlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection
from django.utils import timezone
from django_q.tasks import async_task

from backfill import drain, events
from backfill.models import (
    DataMigration,
    EventSource,
    EventStatus,
    ProviderEventDelivery,
    RejectedWebhook,
)
from revassure import dbwait, metrics
from revassure.logs import on_commit

log = logging.getLogger(__name__)


def store_delivery(
    raw: bytes, *, source: str, migration: DataMigration | None = None, line: int | None = None
) -> ProviderEventDelivery:
    """Keep the delivery as it came; an unusable body is quarantined with the reason."""
    delivery = ProviderEventDelivery(source=source, migration=migration, line=line)
    fill(delivery, raw)
    delivery = insert(delivery)
    # A usable delivery's trace is its row and the answer; a quarantined one's
    # reason is logged (one JSON log line per delivery was a tenth of the intake).
    if delivery.status == EventStatus.QUARANTINED:
        log.warning(
            "provider event quarantined",
            extra={"delivery_id": delivery.pk, "event_id": delivery.event_id, "reason": delivery.reason},
        )
    else:
        log.debug("provider event stored", extra={"delivery_id": delivery.pk, "event_id": delivery.event_id})
    return delivery


def store_deliveries(
    lines: list[tuple[int, bytes]],
    *,
    migration: DataMigration,
    stored: dict[int, ProviderEventDelivery] | None = None,
) -> list[ProviderEventDelivery]:
    """store_delivery for many lines of a replay, in one insert.

    `stored`: the migration's deliveries by line that an earlier, interrupted
    attempt already stored past its checkpoint; those lines reuse their row
    (and its outcome, when it has one) instead of being stored a second time.
    """
    stored = stored or {}
    deliveries, built = [], []
    for number, raw in lines:
        delivery = stored.get(number)
        if delivery is None:
            delivery = ProviderEventDelivery(source=EventSource.REPLAY, migration=migration, line=number)
            fill(delivery, raw)
            built.append(delivery)
        deliveries.append(delivery)
    ProviderEventDelivery.objects.bulk_create(built)
    return deliveries


def insert(delivery: ProviderEventDelivery) -> ProviderEventDelivery:
    """The delivery saved, by one INSERT … RETURNING its id written once per
    database vendor: the ORM's save() compiled it anew on every request, a third
    of the webhook's own CPU (docs/scaling.md). Every concrete field goes in,
    prepared as save() prepares it (auto_now_add, defaults); the model has no
    save() of its own and no signal receivers, which a test keeps true. The
    stored row comes back as loaded from the database. On a database that
    cannot return the id from an INSERT (SQLite before 3.35), save() does it."""
    if not connection.features.can_return_columns_from_insert:
        delivery.save()
        return delivery
    fields, names, sql = insert_statement(connection.vendor)
    values = {field.attname: field.pre_save(delivery, True) for field in fields}
    with connection.cursor() as cursor:
        cursor.execute(sql, [field.get_db_prep_save(values[field.attname], connection) for field in fields])
        (values[ProviderEventDelivery._meta.pk.attname],) = cursor.fetchone()
    return ProviderEventDelivery.from_db(connection.alias, names, [values[name] for name in names])


@functools.cache
def insert_statement(vendor: str) -> tuple[list, list[str], str]:
    """(the fields it writes, the names from_db takes: every field's, in the
    model's order, the SQL) of `insert` on a database of this vendor."""
    meta = ProviderEventDelivery._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    names = [field.attname for field in meta.concrete_fields]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    returning = quote(meta.pk.column)
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders}) RETURNING {returning}"
    return fields, names, sql


def fill(delivery: ProviderEventDelivery, raw: bytes) -> None:
    # Kept as text; the few bytes no database can store as text (invalid UTF-8,
    # NUL) become U+FFFD. Such a body is not JSON, so nothing usable is lost.
    delivery.raw = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    try:
        event = events.parse(raw)
    except events.Unusable as exc:
        delivery.status, delivery.reason = EventStatus.QUARANTINED, str(exc)
        delivery.event_id = events.best_effort_id(raw)  # so ops can find it
    else:
        delivery.event_id, delivery.event_type = event.event_id, event.type
        delivery.user_id, delivery.entry_id = event.user_id, event.entry_id


def record_rejection(raw: bytes, *, reason: str, remote_addr: str | None) -> RejectedWebhook | None:
    """Keep the trace of a request refused for its signature (not its body: it is
    not the provider's until it is signed). Traces older than
    REJECTED_WEBHOOK_RETENTION_DAYS go as new ones come, so a flood of forged
    requests cannot grow the table without end. None when the database cannot
    take the trace now (it waits no longer than a delivery would): the refusal
    stands all the same."""
    cutoff = timezone.now() - timedelta(days=settings.REJECTED_WEBHOOK_RETENTION_DAYS)
    with dbwait.short_write_wait(settings.WEBHOOK_STORE_WAIT_SECONDS):
        try:
            RejectedWebhook.objects.filter(received_at__lt=cutoff).delete()
            return RejectedWebhook.objects.create(
                reason=reason[:200],
                remote_addr=remote_addr or None,
                body_bytes=len(raw),
                body_sha256=hashlib.sha256(raw).hexdigest(),
            )
        except (DatabaseError, InterfaceError) as exc:
            log.warning("rejected webhook not recorded: %s", exc)
            return None


class IntakeUnavailable(Exception):
    """The delivery could not be stored (the database is locked or away): the
    provider is asked to send it again (503 with Retry-After); nothing was kept."""


def receive_webhook(raw: bytes) -> ProviderEventDelivery:
    """Store a signed webhook delivery and, when usable, have a worker apply it
    after the commit: the drain (backfill.drain), which applies what is waiting
    in batches, or with WEBHOOK_APPLY=per_delivery a task of its own.

    The insert waits at most WEBHOOK_STORE_WAIT_SECONDS for a lock another
    connection holds (IntakeUnavailable after that), never the busy timeout the
    workers keep: a provider's request must not hang behind a long transaction.
    Once stored, a failure to wake a drainer is left to the minute's sweep."""
    with dbwait.short_write_wait(settings.WEBHOOK_STORE_WAIT_SECONDS):
        try:
            # One INSERT, committed on its own (no transaction around it: BEGIN and
            # COMMIT were a fifth of the request); what follows runs after that commit.
            delivery = store_delivery(raw, source=EventSource.WEBHOOK)
        except (DatabaseError, InterfaceError) as exc:
            log.warning("webhook delivery not stored: %s", exc)
            metrics.webhook_delivery("unstored")
            raise IntakeUnavailable(str(exc)) from exc
        try:
            if delivery.status != EventStatus.RECEIVED:
                on_commit(lambda: metrics.webhook_delivery(delivery.status))
            elif settings.WEBHOOK_APPLY == "per_delivery":
                on_commit(
                    lambda: async_task(
                        "backfill.tasks.apply_delivery",
                        delivery.pk,
                        task_name=f"provider-event-{delivery.pk}",
                    )
                )
            else:
                on_commit(drain.wake)
        except (DatabaseError, InterfaceError):
            # Stored: the sweep (every minute) drains what waits with no drainer.
            log.exception("webhook delivery stored, drain not woken", extra={"delivery_id": delivery.pk})
    return delivery
