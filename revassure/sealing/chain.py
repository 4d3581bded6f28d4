"""The chain: seal, verify and mirror any registered report kind.

A kind (reconciliation runs, settlement runs, cutover records) registers once
from its app's AppConfig.ready() with what only it knows: its model, how its
checksum is computed from the database, how it is mirrored to Firestore (if it
is). The rest is here, the same for every kind:

- `seal()` completes a run: locks it and the head of its kind's chain, takes
  the next position and the head's checksum, stores status, finish time, link
  and checksum in one transaction, and retries when another run took the same
  position at the same moment;
- `verify()` recomputes every sealed record's checksum, follows the chain
  (consecutive positions, each holding the checksum of the one before) and,
  given a gateway, compares the Firestore mirror field by field and document
  by document;
- `mirror()` writes a sealed record's mirror, logging (not raising) a failure:
  verify names a mirror that is missing or differs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from revassure.sealing.canonical import comparable

if TYPE_CHECKING:  # the models load with the app registry; apps import this module from apps.py
    from revassure.sealing.models import SealedRun

log = logging.getLogger(__name__)

MIRROR_DIFFERENCES_LISTED = 20  # per report; beyond these, the differences are counted
SEALED_FIELDS = ("status", "finished_at", "chain_seq", "previous_checksum", "checksum")


@dataclass(frozen=True)
class Mirror:
    """Where and how a kind's sealed records are mirrored to Firestore."""

    collection: str  # the root collection, one document per record
    child: tuple[str, str]  # (subcollection id, what one of its documents is called)
    document: Callable[[Any], dict]  # the header document of a record
    children: Callable[[Any], Iterator[tuple[str, dict]]]  # (id, fields) of its child documents
    put: Callable[[Any, Any], None]  # put(gateway, record): write the mirror
    stream: Callable[[Any], Iterable[tuple[str, dict]]]  # stream(gateway): (id, header) of every mirror
    stream_children: Callable[[Any, str], Iterable[tuple[str, dict]]]  # (gateway, id) -> children


@dataclass(frozen=True)
class ReportKind:
    """One kind of sealed report and its own chain."""

    name: str  # "reconciliation", "settlement", "cutover"
    model: type[SealedRun]
    open_status: str  # the status a record is sealed from
    sealed_status: str  # the status sealing gives it unless told otherwise
    chained: tuple[str, ...]  # the statuses of records that are in the chain
    compute_checksum: Callable[[Any], str]  # the checksum of a record as the database holds it now
    # How problems name a record: the id alone, or "settlement 4".
    problem_name: Callable[[Any], Any] = lambda pk: pk
    unchained: str = "completed but not in the chain"
    # Further checks of one sealed record (messages); empty when it holds.
    also_check: Callable[[Any], list[str]] = field(default=lambda record: [])
    # Fields besides SEALED_FIELDS that the kind's checksum function sets when sealing (the record).
    content_fields: tuple[str, ...] = ()
    mirror: Mirror | None = None


_KINDS: dict[str, ReportKind] = {}


def register(kind: ReportKind) -> ReportKind:
    """Add a kind to the registry (from its app's AppConfig.ready(); once per name)."""
    if kind.name in _KINDS and _KINDS[kind.name] != kind:
        raise ValueError(f"report kind {kind.name} is registered already")
    _KINDS[kind.name] = kind
    return kind


def kinds() -> list[ReportKind]:
    """Every registered kind, in registration order (the order of INSTALLED_APPS)."""
    return list(_KINDS.values())


# rederive(run id, gateway=...) -> an outcome with .outcome (0 same, 2 different,
# 1 cannot), .message, .differences and .as_json(): a sealed run read again at its
# instant (`verify_reports --rederive`), registered by the app whose runs have one.
_REDERIVE: dict[str, Callable[..., Any]] = {}


def register_rederive(kind_name: str, rederive: Callable[..., Any]) -> None:
    _REDERIVE[kind_name] = rederive


def rederiver(kind_name: str) -> Callable[..., Any] | None:
    return _REDERIVE.get(kind_name)


# -- sealing ------------------------------------------------------------------


def seal(
    kind: ReportKind,
    pk: Any,
    *,
    checksum: Callable[[Any], str] | None = None,
    ready: Callable[[Any], bool] | None = None,
    status: str | None = None,
    finished_at: datetime | None = None,
    values: dict[str, Any] | None = None,
    before: Callable[[Any], None] | None = None,
    attempts: int = 5,
) -> Any | None:
    """Seal record `pk` of `kind`: None when it is not open (sealed already,
    failed) or `ready(record)` says it is not ready yet; the sealed record otherwise.

    The record is read again under a row lock; `values` (field: value) are set
    on it first, then its chain link, status (`status` or the kind's sealed
    status) and finish time, then `checksum(record)` (the kind's own by
    default), which may set the kind's content fields; `before(record)` runs
    last, in the same transaction.
    """
    values = dict(values or {})
    compute = checksum or kind.compute_checksum
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                record = kind.model.objects.select_for_update().filter(pk=pk).first()
                if record is None or record.status != kind.open_status or (ready and not ready(record)):
                    return None
                head = (
                    kind.model.objects.select_for_update()
                    .filter(chain_seq__isnull=False)
                    .order_by("-chain_seq")
                    .first()
                )
                for name, value in values.items():
                    setattr(record, name, value)
                record.chain_seq = head.chain_seq + 1 if head and head.chain_seq is not None else 1
                record.previous_checksum = head.checksum if head else ""
                record.status = status or kind.sealed_status
                record.finished_at = finished_at or timezone.now()
                record.checksum = compute(record)
                if before is not None:
                    before(record)
                # The row still reads open in the database: update it directly,
                # since save() refuses once the status reads as finished.
                kind.model.objects.filter(pk=pk, status=kind.open_status).update(
                    **{
                        name: getattr(record, name)
                        for name in (*SEALED_FIELDS, *kind.content_fields, *values)
                    }
                )
            return record
        except IntegrityError:
            # Another record took this chain position at the same moment: take the next.
            if attempt == attempts - 1:
                raise
    return None


def sealed(kind: ReportKind) -> QuerySet:
    """The records in the kind's chain, in chain order."""
    return kind.model.objects.filter(status__in=kind.chained).order_by("chain_seq", "pk")


def mirror(kind: ReportKind, record: Any, *, gateway: Any) -> bool:
    """Mirror a sealed record to Firestore. A failure is logged, not raised: the
    record itself is complete, and verify names a mirror missing or differing."""
    if kind.mirror is None:
        return False
    try:
        kind.mirror.put(gateway, record)
        return True
    except Exception as exc:
        log.error(f"{kind.name} report mirror failed", extra={"run_id": record.pk, "error": repr(exc)})
        return False


# -- verifying ----------------------------------------------------------------


@dataclass
class Problem:
    run_id: int | str
    message: str
    # For a mirror that differs: {"document", "field", "mirror", "report"} (field None for a
    # whole document missing or extra), so a script can tell what differs without parsing text.
    difference: dict | None = None

    def __str__(self) -> str:
        return f"run {self.run_id}: {self.message}"

    def as_json(self) -> dict:
        found: dict[str, Any] = {"run_id": self.run_id, "message": self.message}
        if self.difference is not None:
            found["difference"] = self.difference
        return found


def verify(kind: ReportKind, *, gateway: Any = None) -> tuple[int, list[Problem]]:
    """Check every sealed record's checksum and chain link (and mirror, given a
    gateway and a kind that is mirrored): (records checked, problems found)."""
    problems: list[Problem] = []
    expected_seq, previous_checksum, checked = 1, "", 0
    for record in sealed(kind).iterator():
        checked += 1
        name = kind.problem_name(record.pk)
        if record.chain_seq is None:
            problems.append(Problem(name, kind.unchained))
            continue
        if record.chain_seq != expected_seq:
            problems.append(
                Problem(
                    name, f"chain position {record.chain_seq}, expected {expected_seq}: a report is missing"
                )
            )
        elif record.previous_checksum != previous_checksum:
            problems.append(Problem(name, "previous checksum does not match the report before it"))
        actual = kind.compute_checksum(record)
        if actual != record.checksum:
            problems.append(Problem(name, f"checksum mismatch: stored {record.checksum}, content {actual}"))
        problems += [Problem(name, text) for text in kind.also_check(record)]
        expected_seq, previous_checksum = record.chain_seq + 1, record.checksum
    if gateway is not None and kind.mirror is not None:
        problems += _mirror_problems(kind, kind.mirror, gateway)
    return checked, problems


def verify_all(*, gateway: Any = None) -> tuple[int, list[Problem]]:
    """verify() over every registered kind, each in its own chain."""
    checked, problems = 0, list[Problem]()
    for kind in kinds():
        count, found = verify(kind, gateway=gateway)
        checked, problems = checked + count, problems + found
    return checked, problems


def _mirror_problems(kind: ReportKind, spec: Mirror, gateway: Any) -> list[Problem]:
    """Each sealed record's mirror against the record: every field, every child document."""
    problems = []
    mirrored = dict(spec.stream(gateway))
    for record in sealed(kind).iterator():
        record_id = str(record.pk)
        name = kind.problem_name(record_id)
        if record_id not in mirrored:
            problems.append(Problem(name, f"not mirrored to Firestore {spec.collection}"))
            continue
        differences = mirror_differences(
            path=f"{spec.collection}/{record_id}",
            mirrored=mirrored.pop(record_id),
            sealed=spec.document(record),
            child=spec.child,
            mirrored_children=iter(spec.stream_children(gateway, record_id)),
            sealed_children=spec.children(record),
        )
        problems += [Problem(name, text, difference) for text, difference in differences]
    for report_id in sorted(mirrored):
        problems.append(
            Problem(kind.problem_name(report_id), f"in Firestore {spec.collection} but not in the database")
        )
    return problems


def _shown(value: Any) -> str:
    text = comparable(value)
    return text if len(text) <= 80 else text[:79] + "…"


def _field_differences(document: str, mirrored: dict, sealed: dict) -> Iterator[tuple[str, dict]]:
    for name in sorted(set(mirrored) | set(sealed)):
        if name not in mirrored:
            text = f"{name} is missing (the report has {_shown(sealed[name])})"
        elif name not in sealed:
            text = f"{name} is {_shown(mirrored[name])}, a field the report does not have"
        elif comparable(mirrored[name]) != comparable(sealed[name]):
            text = f"{name} is {_shown(mirrored[name])}, the report has {_shown(sealed[name])}"
        else:
            continue
        yield (
            text,
            {"document": document, "field": name, "mirror": mirrored.get(name), "report": sealed.get(name)},
        )


def mirror_differences(
    *,
    path: str,
    mirrored: dict,
    sealed: dict,
    child: tuple[str, str],
    mirrored_children: Iterator[tuple[str, dict]],
    sealed_children: Iterator[tuple[str, dict]],
) -> list[tuple[str, dict]]:
    """Every difference between a report's Firestore mirror and the sealed report:
    each field of the header document (`path`), each document of its `child`
    subcollection ((collection id, what one is called): missing, extra, or a
    field that differs). (message, difference) pairs, at most
    MIRROR_DIFFERENCES_LISTED, then one counting the rest."""
    found: list[tuple[str, dict]] = []

    def add(text: str, difference: dict) -> None:
        found.append((f"Firestore mirror differs from the report: {text}", difference))

    for text, difference in _field_differences(path, mirrored, sealed):
        add(text, difference)
    collection, called = child
    held = dict(mirrored_children)
    for key, record in sealed_children:
        document = f"{path}/{collection}/{key}"
        if key not in held:
            add(
                f"{called} {key} is missing",
                {"document": document, "field": None, "mirror": None, "report": record},
            )
            continue
        for text, difference in _field_differences(document, held.pop(key), record):
            add(f"{called} {key}: {text}", difference)
    for key in sorted(held):
        add(
            f"{called} {key} is there, the report has no such {called}",
            {"document": f"{path}/{collection}/{key}", "field": None, "mirror": held[key], "report": None},
        )
    if len(found) > MIRROR_DIFFERENCES_LISTED:
        more = len(found) - MIRROR_DIFFERENCES_LISTED
        found = found[:MIRROR_DIFFERENCES_LISTED]
        found.append((f"Firestore mirror differs from the report in {more} more places", {"document": path}))
    return found
