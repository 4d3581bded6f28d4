"""What revassure itself reads from the environment: Firestore, the shared
files, snapshots, reconciliation and the watcher, breaks, feature flags, heals,
webhooks and backfills, settlement, the job API, metrics and alerts, email,
outbound deadlines, the task queue's limits. revassure.settings takes it whole
(Django reads its settings there); each variable is read once, here.
"""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from revassure.environment import BASE_DIR, env

GOOGLE_CLOUD_PROJECT = env.str("GOOGLE_CLOUD_PROJECT", default="revassure-local")
FIRESTORE_EMULATOR_HOST = env.str("FIRESTORE_EMULATOR_HOST", default="")
# Retries of transient Firestore errors (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED,
# RESOURCE_EXHAUSTED): exponential backoff with jitter, capped in total time.
FIRESTORE_RETRY_DEADLINE = env.float("FIRESTORE_RETRY_DEADLINE", default=60.0)
FIRESTORE_CALL_TIMEOUT = env.float("FIRESTORE_CALL_TIMEOUT", default=30.0)

# Files a worker on any machine reads (revassure/files.py, docs/scaling.md): the
# admin's uploads (backfill exports, reversal CSVs, settlement statements) are
# kept through Django's storage API, storages["default"]. REVASSURE_STORAGE=local
# (the default, `make demo`): the local disk under MEDIA_ROOT, for one machine
# (or a volume every machine mounts); gcs: Cloud Storage, the bucket
# GS_BUCKET_NAME (objects under GS_LOCATION, credentials from the environment:
# the service account on Google Cloud), through django-storages.
# A pathlib.Path (env.path would give an environ.Path, which has no mkdir()).
REVASSURE_STORAGE = env.str("REVASSURE_STORAGE", default="local")
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "uploads")))
GS_BUCKET_NAME = env.str("GS_BUCKET_NAME", default="")
GS_LOCATION = env.str("GS_LOCATION", default="").strip("/")
GS_PROJECT_ID = env.str("GS_PROJECT_ID", default="") or None
# A file read from Cloud Storage is held in memory up to this size, then on disk.
GS_MAX_MEMORY_SIZE = env.int("GS_MAX_MEMORY_SIZE", default=8 << 20)
if REVASSURE_STORAGE == "gcs":
    if not GS_BUCKET_NAME:
        raise ImproperlyConfigured("REVASSURE_STORAGE=gcs needs GS_BUCKET_NAME (the bucket the files go to)")
    SHARED_STORAGE = {
        "BACKEND": "storages.backends.gcloud.GoogleCloudStorage",
        "OPTIONS": {
            "bucket_name": GS_BUCKET_NAME,
            "location": GS_LOCATION,
            "project_id": GS_PROJECT_ID,
            "max_memory_size": GS_MAX_MEMORY_SIZE,
            # Names are made unique by the product; never rename silently.
            "file_overwrite": False,
        },
    }
elif REVASSURE_STORAGE == "local":
    SHARED_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
else:
    raise ImproperlyConfigured(f"REVASSURE_STORAGE must be local or gcs, not {REVASSURE_STORAGE!r}")
# Snapshots (snapshots/, docs/snapshots.md): where `snapshot_firestore` and the
# admin write them unless told otherwise (a local directory, or gs://bucket/prefix
# that every machine reads: by default the shared bucket's snapshots/ with
# REVASSURE_STORAGE=gcs); the projects a snapshot may be
# restored into (never FIRESTORE_PRODUCTION_PROJECT: a start-up check refuses
# a list that names it); on Google Cloud, the bucket (gs://...) Firestore's
# managed export goes to beside each snapshot (unset: no managed export).
SNAPSHOT_DIR = env.str(
    "SNAPSHOT_DIR",
    default=(
        "gs://" + "/".join(filter(None, [GS_BUCKET_NAME, GS_LOCATION, "snapshots"]))
        if REVASSURE_STORAGE == "gcs"
        else str(BASE_DIR / "snapshots-data")
    ),
)
SNAPSHOT_BUCKET = env.str("SNAPSHOT_BUCKET", default="")
RESTORE_ALLOWED_PROJECTS = env.list("RESTORE_ALLOWED_PROJECTS", default=[])
# A worker taking a snapshot renews its lease after each file; silent this long
# (by the database's clock), it is taken for dead and the minute's sweep hands
# the snapshot to another worker.
SNAPSHOT_LEASE_SECONDS = env.int("SNAPSHOT_LEASE_SECONDS", default=300)
FIRESTORE_PRODUCTION_PROJECT = env.str("FIRESTORE_PRODUCTION_PROJECT", default="")

# Reconciliation: how many ledger aggregations run at once in one process, how
# many wallets one worker chunk holds, and when the daily run starts (UTC).
RECONCILE_CONCURRENCY = env.int("RECONCILE_CONCURRENCY", default=64)
RECONCILE_CHUNK_SIZE = env.int("RECONCILE_CHUNK_SIZE", default=1000)
# A worker holds a chunk it checks, or a run's listing between two chunks, this
# long (by the database's clock); past it, the worker is taken for dead and the
# minute's sweep hands the work to another (reconciliation/recovery.py). Longer
# than a chunk takes: a live worker's chunk taken over is only checked twice.
RECONCILE_LEASE_SECONDS = env.int("RECONCILE_LEASE_SECONDS", default=300)
# The real-time watcher (watch_ledger, docs/realtime.md): a wallet is checked this
# long after the first write of a burst; its state is saved every heartbeat; it
# counts as behind when its resume point lags the heartbeat by more than the lag.
WATCHER_DEBOUNCE_SECONDS = env.float("WATCHER_DEBOUNCE_SECONDS", default=0.25)
WATCHER_HEARTBEAT_SECONDS = env.float("WATCHER_HEARTBEAT_SECONDS", default=2.0)
WATCHER_MAX_LAG_SECONDS = env.float("WATCHER_MAX_LAG_SECONDS", default=60.0)
RECONCILE_DAILY_AT = env.str("RECONCILE_DAILY_AT", default="02:00")
# One instant (docs/reconciliation.md): a run reads everything as of the time it
# starts, within Firestore's read-time window (1 hour; 7 days with point-in-time
# recovery enabled on the database, FIRESTORE_PITR_ENABLED). A run expected to
# outlast the window reads live instead, saying why; the expectation divides the
# wallets by the rate of the last full run of 10,000 wallets or more, or by
# RECONCILE_EXPECTED_RATE (wallets per second) before there is one.
# RECONCILE_POINT_IN_TIME off always reads live.
FIRESTORE_PITR_ENABLED = env.bool("FIRESTORE_PITR_ENABLED", default=False)
RECONCILE_EXPECTED_RATE = env.float("RECONCILE_EXPECTED_RATE", default=1000.0)
RECONCILE_POINT_IN_TIME = env.bool("RECONCILE_POINT_IN_TIME", default=True)

# Breaks (one wallet's drift followed across runs, reconciliation/breaks.py).
# BREAK_TRACKING off leaves runs as they were (no breaks opened or closed).
# Severity: low, medium from BREAK_SEVERITY_MEDIUM_POINTS of |delta| (and any
# malformed break), high from BREAK_SEVERITY_HIGH_POINTS; one level more once
# older than BREAK_SEVERITY_ESCALATE_DAYS (high becomes critical). Age buckets:
# whole days, upper bounds (1,7,30 gives 0-1, 2-7, 8-30 and over 30). The
# probable cause reads at most BREAK_CAUSE_MAX_ENTRIES ledger entries of a
# wallet, BREAK_CAUSE_CONCURRENCY ledgers at a time.
BREAK_TRACKING = env.bool("BREAK_TRACKING", default=True)
BREAK_SEVERITY_MEDIUM_POINTS = env.int("BREAK_SEVERITY_MEDIUM_POINTS", default=100)
BREAK_SEVERITY_HIGH_POINTS = env.int("BREAK_SEVERITY_HIGH_POINTS", default=1000)
BREAK_SEVERITY_ESCALATE_DAYS = env.int("BREAK_SEVERITY_ESCALATE_DAYS", default=7)
BREAK_AGE_BUCKETS = env.list("BREAK_AGE_BUCKETS", cast=int, default=[1, 7, 30])
BREAK_CAUSE_MAX_ENTRIES = env.int("BREAK_CAUSE_MAX_ENTRIES", default=1000)
BREAK_CAUSE_CONCURRENCY = env.int("BREAK_CAUSE_CONCURRENCY", default=32)

# Feature flags: the default of each flag in this environment. Ops can override
# any of them at runtime from the admin; see revassure/flags.py.
FEATURE_FLAG_DEFAULTS = {
    "reconciliation_enabled": env.bool("FLAG_RECONCILIATION_ENABLED", default=True),
    "auto_heal_enabled": env.bool("FLAG_AUTO_HEAL_ENABLED", default=False),
    "backfill_enabled": env.bool("FLAG_BACKFILL_ENABLED", default=True),
}

# Heals and manual adjustments: the auto-heal policy approves rebalances whose
# drift is at most AUTO_HEAL_MAX_DRIFT points (when its flag is on); a change of
# more than TWO_APPROVERS_ABOVE points needs two distinct approvers; proposals
# not decided within PROPOSAL_TTL_HOURS expire.
AUTO_HEAL_MAX_DRIFT = env.int("AUTO_HEAL_MAX_DRIFT", default=10)
TWO_APPROVERS_ABOVE = env.int("TWO_APPROVERS_ABOVE", default=10_000)
PROPOSAL_TTL_HOURS = env.int("PROPOSAL_TTL_HOURS", default=72)

# Payment provider webhooks: the shared secrets (several, comma-separated, while
# one is rotated), and whether a reversal may take a wallet below zero (else the
# event is quarantined for review).
PAYNOW_WEBHOOK_SECRETS = env.list("PAYNOW_WEBHOOK_SECRETS", default=[])
# Webhook requests refused for their signature are kept (time, sender, size,
# body digest) this many days, for the admin and the webhooks_unhealthy rule.
REJECTED_WEBHOOK_RETENTION_DAYS = env.int("REJECTED_WEBHOOK_RETENTION_DAYS", default=30)
# How the workers apply webhook deliveries: "batched" (a worker drains what is
# waiting in batched commits, the file replay's path; a burst is a handful of
# tasks) or "per_delivery" (one task and one transaction each: the path before
# batching, kept as the bench's baseline). The drainer's lease lapses this many
# seconds after its last batch, so a drain whose worker died is taken over.
WEBHOOK_APPLY = env.str("WEBHOOK_APPLY", default="batched")
if WEBHOOK_APPLY not in ("batched", "per_delivery"):
    raise ImproperlyConfigured(f"WEBHOOK_APPLY must be batched or per_delivery, not {WEBHOOK_APPLY!r}")
WEBHOOK_DRAIN_LEASE_SECONDS = env.int("WEBHOOK_DRAIN_LEASE_SECONDS", default=30)
# A webhook delivery's insert waits at most this long for SQLite's write lock
# held by another connection; then (or when PostgreSQL refuses, e.g. its
# lock_timeout) the provider gets 503 with Retry-After (seconds) and sends the
# delivery again.
# A replay of stored deliveries saves its progress (its heartbeat) after each
# delivery; silent this long, its worker is taken for dead: the webhook drain no
# longer steps aside for it, and the minute's sweep hands it to another worker,
# which goes on from its checkpoint.
REPLAY_LEASE_SECONDS = env.int("REPLAY_LEASE_SECONDS", default=30)
WEBHOOK_STORE_WAIT_SECONDS = env.float("WEBHOOK_STORE_WAIT_SECONDS", default=5.0)
WEBHOOK_RETRY_AFTER_SECONDS = env.int("WEBHOOK_RETRY_AFTER_SECONDS", default=30)
BACKFILL_ALLOW_NEGATIVE_BALANCE = env.bool("BACKFILL_ALLOW_NEGATIVE_BALANCE", default=False)
# Four eyes on backfill plans: a real run bound to a dry run's plan that moves more than
# this many points (wallet by wallet, in absolute value) needs the plan approved by a
# second person first, someone other than who planned it (backfill/plan_approval.py).
BACKFILL_PLAN_APPROVAL_ABOVE = env.int("BACKFILL_PLAN_APPROVAL_ABOVE", default=0)
# Settlement statements (settlement/, docs/settlement.md): the only directory
# whose local files the job API may name (gs://bucket/object is the form for
# several machines; a local path needs the same directory on every machine).
SETTLEMENT_LOCAL_DIR = Path(env.str("SETTLEMENT_LOCAL_DIR", default=str(MEDIA_ROOT / "settlement")))
# A worker matching a statement renews its lease while it works; silent this
# long (by the database's clock), it is taken for dead and the minute's sweep
# hands the run to another worker, which starts it over from the kept file.
SETTLEMENT_LEASE_SECONDS = env.int("SETTLEMENT_LEASE_SECONDS", default=300)

# Job endpoints (/api/jobs/*) take a Google-signed OIDC ID token (Cloud Scheduler):
# its audience must be JOBS_OIDC_AUDIENCE, its issuer one of JOBS_OIDC_ISSUERS, its
# verified email one of JOBS_ALLOWED_EMAILS. With no audience set, every call is refused.
JOBS_OIDC_AUDIENCE = env.str("JOBS_OIDC_AUDIENCE", default="")
JOBS_ALLOWED_EMAILS = env.list("JOBS_ALLOWED_EMAILS", default=[])
JOBS_OIDC_ISSUERS = env.list(
    "JOBS_OIDC_ISSUERS", default=["https://accounts.google.com", "accounts.google.com"]
)
JOBS_OIDC_CERTS_URL = env.str("JOBS_OIDC_CERTS_URL", default="https://www.googleapis.com/oauth2/v1/certs")
JOBS_CLOCK_SKEW_SECONDS = env.int("JOBS_CLOCK_SKEW_SECONDS", default=10)

# Observability (observability/, docs/observability.md). GET /metrics answers
# only `Authorization: Bearer <METRICS_TOKEN>` (404 while it is unset).
# PROMETHEUS_MULTIPROC_DIR (read by prometheus-client itself, from the
# environment, before it is first imported): the directory web and worker
# processes share their counters through; wiped when the service starts.
# Unset, each process serves its own counters only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    # prometheus-client writes there from its first metric on and never makes
    # the directory: a fresh machine (the tests' /tmp one) would fail on import.
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
# Alerts go to ALERT_EMAILS (comma-separated) through Django's email backend and
# to ALERT_WEBHOOK_URL as Slack-compatible JSON, signed with ALERT_WEBHOOK_SECRET
# when it is set. Email: EMAIL_URL (smtp://user:password@host:587, smtp+tls://,
# consolemail://, filemail:///path) or the usual EMAIL_* variables.
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
ALERT_WEBHOOK_URL = env.str("ALERT_WEBHOOK_URL", default="")
ALERT_WEBHOOK_SECRET = env.str("ALERT_WEBHOOK_SECRET", default="")
# Who the product's email comes from: ALERT_FROM_EMAIL for alerts and inbox notices, else
# DEFAULT_FROM_EMAIL (Django's sender for its own mail). With ALERT_EMAILS set, a start-up
# check requires a real address (not Django's webmaster@localhost, which mail servers refuse).
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="webmaster@localhost")
ALERT_FROM_EMAIL = env.str("ALERT_FROM_EMAIL", default="") or DEFAULT_FROM_EMAIL
# Where people reach the back office: the links in the emails we send them.
SITE_URL = env.str("SITE_URL", default="http://localhost:8000")
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    globals().update(env.email_url_config(EMAIL_URL))
else:
    EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
    EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
    EMAIL_PORT = env.int("EMAIL_PORT", default=25)
    EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
    EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
    EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
    EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / "sent-mail"))
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
# Every call to another service (alert webhook, SMTP, the job tokens' signing
# certificates) ends within this many seconds in all, however slowly the other
# end answers (a per-read timeout does not bound a trickle).
OUTBOUND_DEADLINE_SECONDS = env.float("OUTBOUND_DEADLINE_SECONDS", default=15.0)
# Reading a file from Cloud Storage (an uploaded export or statement, a gs://
# statement, a snapshot's file) ends within this many seconds in all: longer than
# OUTBOUND_DEADLINE_SECONDS, the files are large. google-cloud-storage's own 60 s
# timeout is per read, so a trickle would never end it (revassure.files.bounded).
STORAGE_DEADLINE_SECONDS = env.float("STORAGE_DEADLINE_SECONDS", default=600.0)

# django-q2: a task must finish within `timeout`; `retry` (which also counts the
# wait in the queue) is longer so that a slow task is never started twice.
Q_TIMEOUT = env.int("Q_TIMEOUT", default=1800)
Q_RETRY = env.int("Q_RETRY", default=Q_TIMEOUT + 300)
Q_WORKERS = env.int("Q_WORKERS", default=2)
# Notifications (alerts, "waiting for me" emails) go to a cluster of their own,
# `<Q_CLUSTER_NAME>-notify` (one worker), so a slow receiver never holds a worker
# that applies money. django-q2 reads Q_CLUSTER_NAME too: a qcluster started with
# Q_CLUSTER_NAME=revassure-notify serves only that cluster (ALT_CLUSTERS below);
# the site is then the name without the suffix, and the web and money processes
# keep Q_CLUSTER_NAME=revassure.
NOTIFY_CLUSTER_SUFFIX = "-notify"
Q_CLUSTER_NAME = env.str("Q_CLUSTER_NAME", default="revassure").removesuffix(NOTIFY_CLUSTER_SUFFIX)
NOTIFY_CLUSTER_NAME = Q_CLUSTER_NAME + NOTIFY_CLUSTER_SUFFIX
