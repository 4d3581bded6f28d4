"""The job API for machines (Cloud Scheduler): start a reconciliation, a
backfill or a settlement reconciliation, read a job's status.

Callers authenticate with a Google-signed OIDC ID token, never a cookie, so the
views are CSRF-exempt and a wrong method gets a 405 rather than a 403. The
OpenAPI document of these endpoints is revassure/openapi.json.
"""

import json
import logging
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from backfill import plan_approval, run_requests
from backfill.models import DataMigration
from jobs.models import Job
from reconciliation import pending_checks, reports, services
from reconciliation.models import RunTrigger
from revassure import jobauth
from revassure.firestore.events import EVENT_TYPES, BadEvent, written_of
from revassure.flags import FeatureDisabled
from revassure.timezones import OUT_OF_RANGE, in_utc
from settlement import reports as settlement_reports
from settlement import services as settlement
from settlement import storage as settlement_storage
from settlement.models import RunTrigger as SettlementTrigger

log = logging.getLogger(__name__)

# A run's fields in a job's body, as the OpenAPI document lists them: a part of
# the run's one summary (reconciliation.reports.run_summary), in this order.
RUN_FIELDS = (
    "status",
    "run_id",
    "wallets_checked",
    "violations_count",
    "total_abs_drift",
    "checksum",
    "error",
)

# How the job API binds a real backfill to an approved plan, for the refusal of one that is not.
API_PLAN_HOW = (
    'POST {"dry_run": true}, have a second person approve its plan in the admin, then POST {"plan": <its id>}'
)

# Limits of the request body, as the OpenAPI document states them.
MAX_UIDS = 100
MAX_UID_LENGTH = 128


def _error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="revassure-jobs"'
    return response


def _caller(request):
    """The authenticated caller, or the response refusing them."""
    try:
        return jobauth.authenticate(request.headers.get("Authorization", "")), None
    except jobauth.Unauthenticated as exc:
        log.warning("job call refused: %s", exc)
        return None, _error(401, str(exc))
    except jobauth.Forbidden as exc:
        log.warning("job call refused: %s", exc)
        return None, _error(403, str(exc))


def _job_body(job: Job) -> dict:
    body = {
        "job_id": job.pk,
        "kind": job.kind,
        "caller": job.caller,
        "created_at": job.created_at.isoformat(),
    }
    if job.migration is not None:
        migration = job.migration
        body.update(
            status=migration.status,
            migration_id=migration.pk,
            total=migration.total,
            **migration.outcomes(),
            error=migration.error,
        )
    if job.run is not None:
        summary = reports.run_summary(job.run)
        body.update((name, summary[name]) for name in RUN_FIELDS)
    if job.settlement_run is not None:
        run = job.settlement_run
        summary = settlement_reports.summary(run)
        body.update(
            status=run.status,
            settlement_run_id=run.pk,
            **{name: summary[name] for name in settlement_reports.SUMMARY_KEYS[1:-1]},
            checksum=run.checksum,
            error=run.error,
        )
    return body


def _start_job(request, caller, kind: str, start, *, refused: str) -> JsonResponse:
    """The one way a job starts: a retry (same Idempotency-Key, or Cloud
    Scheduler's same slot) gets the job it started; otherwise `start(key)`
    starts the work and returns the unsaved Job, saved here in one transaction."""
    key = request.headers.get("Idempotency-Key", "")
    slot = request.headers.get("X-CloudScheduler-ScheduleTime", "")
    if len(key) > 200 or len(slot) > 100:
        return _error(400, "Idempotency-Key (200) or X-CloudScheduler-ScheduleTime (100) is too long")
    key = key or (f"schedule:{slot}" if slot else "")
    if key:
        existing = Job.objects.filter(kind=kind, idempotency_key=key).first()
        if existing:
            return JsonResponse(_job_body(existing), status=202)
    try:
        with transaction.atomic():
            job = start(key)
            job.kind, job.caller = kind, caller.email
            job.save()
    except FeatureDisabled as exc:
        return _error(503, f"{refused}: {exc}")
    except (plan_approval.PlanRequired, run_requests.BoundRunRefused) as exc:
        return _error(409, f"{refused}: {exc}")
    except ValueError as exc:
        return _error(400, str(exc))
    except IntegrityError:
        # The same key arrived twice at once: the first one's job is the job.
        job = Job.objects.get(kind=kind, idempotency_key=key)
    return JsonResponse(_job_body(job), status=202)


@csrf_exempt
@require_POST
def reconcile_job(request: HttpRequest) -> HttpResponse:
    caller, refusal = _caller(request)
    if refusal:
        return refusal
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError:  # not JSON, or not even UTF-8
        return _error(400, "the body must be JSON (UTF-8)")
    if not isinstance(payload, dict) or set(payload) - {"uids"}:
        return _error(400, 'the body must be a JSON object, optionally {"uids": ["...", ...]}')
    uids = payload.get("uids")
    if "uids" in payload and not (isinstance(uids, list) and all(isinstance(u, str) for u in uids)):
        return _error(400, "uids must be a list of strings")
    if uids is not None:
        # The whole body is checked before the idempotency key is looked up, so
        # a bad request is always a 400, never someone else's job.
        if len(uids) > MAX_UIDS or any(len(uid) > MAX_UID_LENGTH for uid in uids):
            return _error(400, f"at most {MAX_UIDS} uids of at most {MAX_UID_LENGTH} characters")
        try:
            services.validate_uids(uids)
        except ValueError as exc:
            return _error(400, str(exc))

    def start(key):
        run = services.request_run(actor=None, trigger=RunTrigger.API, uids=uids)
        return Job(idempotency_key=key or f"run:{run.pk}", run=run)

    return _start_job(request, caller, Job.Kind.RECONCILE, start, refused="reconciliation refused")


@csrf_exempt
@require_POST
def backfill_job(request: HttpRequest) -> HttpResponse:
    """Re-apply stored provider events not applied yet, in a worker.

    Optional body: {"include_quarantined": bool, "since": ISO time, "until": ISO
    time, "dry_run": bool}, or {"plan": the id of an approved dry run} for the
    real run bound to that plan. A real run without a plan whose events name
    more than BACKFILL_PLAN_APPROVAL_ABOVE points is refused (409): four eyes."""
    caller, refusal = _caller(request)
    if refusal:
        return refusal
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError:
        return _error(400, "the body must be JSON (UTF-8)")
    allowed = {"include_quarantined", "since", "until", "dry_run"}
    if not isinstance(payload, dict) or (set(payload) - allowed and set(payload) != {"plan"}):
        return _error(
            400,
            'the body may hold only "include_quarantined", "since", "until" and "dry_run", or "plan" alone',
        )
    if "plan" in payload:
        plan = payload["plan"]
        if not isinstance(plan, int) or isinstance(plan, bool) or not 0 < plan < 2**63:
            return _error(400, "plan must be the id of a dry run (a positive integer)")

        if not DataMigration.objects.filter(pk=plan).exists():
            return _error(404, f"there is no migration {plan}")

        def start_bound(key):
            migration = run_requests.request_bound_run(plan, actor=None)
            return Job(idempotency_key=key or f"migration:{migration.pk}", migration=migration)

        return _start_job(request, caller, Job.Kind.BACKFILL, start_bound, refused="backfill refused")
    include = payload.get("include_quarantined", False)
    dry_run = payload.get("dry_run", False)
    window: dict[str, datetime] = {}
    for name in ("since", "until"):
        if name in payload:
            value = payload[name]
            try:
                parsed = parse_datetime(value) if isinstance(value, str) else None
            except ValueError:  # well formed, but not a real time (a 13th month)
                parsed = None
            if parsed is None or parsed.tzinfo is None:
                return _error(400, f"{name} must be an ISO 8601 time with a time zone")
            utc = in_utc(parsed)
            if utc is None:
                return _error(400, f"{name} {OUT_OF_RANGE}")
            window[name] = utc
    if not isinstance(include, bool):
        return _error(400, "include_quarantined must be true or false")
    if not isinstance(dry_run, bool):
        return _error(400, "dry_run must be true or false")

    def start(key):
        migration = run_requests.request_stored_replay(
            include_quarantined=include,
            since=window.get("since"),
            until=window.get("until"),
            dry_run=dry_run,
            how=API_PLAN_HOW,
        )
        return Job(idempotency_key=key or f"migration:{migration.pk}", migration=migration)

    return _start_job(request, caller, Job.Kind.BACKFILL, start, refused="backfill refused")


@csrf_exempt
@require_POST
def settlement_job(request: HttpRequest) -> HttpResponse:
    """Match a settlement statement, in a worker: the scheduled daily import.

    Body: {"path": "gs://bucket/object"} (fetched by the worker) or the
    absolute path of a file in SETTLEMENT_LOCAL_DIR (tests, a mounted volume).
    Applied payments are compared over the statement's own period."""
    caller, refusal = _caller(request)
    if refusal:
        return refusal
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError:
        return _error(400, "the body must be JSON (UTF-8)")
    if not isinstance(payload, dict) or set(payload) != {"path"}:
        return _error(
            400, 'the body must be {"path": "gs://bucket/object" or a file in the settlement directory}'
        )
    source = payload["path"]
    if not isinstance(source, str) or not 0 < len(source) <= 500:
        return _error(400, "path must be a gs://bucket/object URI or a local file path")
    if settlement_storage.is_cloud_storage(source):
        try:
            settlement_storage.split_uri(source)
        except ValueError as exc:
            return _error(400, str(exc))
        path = ""  # the worker fetches it
    elif source.startswith("/"):
        local = _local_statement(source)
        if local is None:
            return _error(404, "no such statement file in the settlement directory")
        path = local
    else:
        return _error(400, "path must be a gs://bucket/object URI or an absolute local file path")

    def start(key):
        run = settlement.request_import(source=source, path=path, trigger=SettlementTrigger.API)
        return Job(idempotency_key=key or f"settlement:{run.pk}", settlement_run=run)

    return _start_job(request, caller, Job.Kind.SETTLEMENT, start, refused="settlement refused")


def _local_statement(source: str) -> str | None:
    """The local file, when it is a file inside SETTLEMENT_LOCAL_DIR; else None."""
    try:
        root = Path(settings.SETTLEMENT_LOCAL_DIR).resolve()
        path = Path(source).resolve()
        return str(path) if path.is_relative_to(root) and path.is_file() else None
    except (OSError, ValueError):  # a NUL byte, a name too long
        return None


@csrf_exempt
@require_GET
def job_status(request: HttpRequest, job_id: int) -> HttpResponse:
    _, refusal = _caller(request)
    if refusal:
        return refusal
    job = get_object_or_404(Job.objects.select_related("run", "migration", "settlement_run"), pk=job_id)
    return JsonResponse(_job_body(job))


@csrf_exempt
@require_POST
def firestore_event(request: HttpRequest) -> HttpResponse:
    """A Firestore Eventarc event (CloudEvents binary mode: `ce-*` headers, a
    DocumentEventData body): the wallet it names is noted for the watcher's
    check (debounced, then re-checked as a run re-checks a candidate).
    202 with the wallets noted; 200 with none for a document that is neither a
    wallet nor a ledger entry; 400 for an event that is not one of ours."""
    caller, refused = _caller(request)
    if refused:
        return refused
    kind = request.headers.get("ce-type", "")
    if kind not in EVENT_TYPES:
        return _error(400, f"ce-type must be one of {sorted(EVENT_TYPES)}, not {kind!r}")
    if not request.headers.get("ce-id"):
        return _error(400, "ce-id is missing")
    source = request.headers.get("ce-source", "")
    expected = f"//firestore.googleapis.com/projects/{settings.GOOGLE_CLOUD_PROJECT}/databases/(default)"
    if source != expected:
        return _error(400, f"ce-source {source!r} is not this project's database ({expected})")
    event_time: datetime | None
    event_time = timezone.now()
    if "ce-time" in request.headers:
        try:
            event_time = parse_datetime(request.headers["ce-time"])
        except ValueError:  # well formed, not a date: the 30th of February
            event_time = None
        if event_time is None:
            return _error(400, "ce-time is not a date and time (RFC 3339)")
    if timezone.is_naive(event_time):
        return _error(400, "ce-time must carry its offset (RFC 3339)")
    event_time = in_utc(event_time)
    if event_time is None:
        return _error(400, f"ce-time {OUT_OF_RANGE}")
    try:
        write = written_of(request.body, event_time=event_time)
    except BadEvent as exc:
        return _error(400, str(exc))
    if write is None:
        return JsonResponse({"wallets": []}, status=200)
    noted = pending_checks.note_written([write])
    log.info(
        "firestore event noted",
        extra={"event_id": request.headers["ce-id"], "caller": caller.email, "wallets": noted},
    )
    return JsonResponse({"wallets": noted}, status=202)
