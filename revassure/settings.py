"""Settings for revassure: environment variables only, each read once here.

Every variable has a safe local default (SQLite, the django-q2 ORM broker, the
local Firestore emulator) or none at all where a default would be unsafe
(`SECRET_KEY` when `DEBUG` is off). `NAME_FILE` works for every variable, so
secrets can come from files mounted by Secret Manager.
"""

import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.FileAwareEnv()

DEBUG = env.bool("DEBUG", default=False)
# A development key is only acceptable while DEBUG is on; production must set one.
SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key" if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
REDIS_URL = env.str("REDIS_URL", default="")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")

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

INSTALLED_APPS = [
    "revassure.apps.RevassureConfig",
    "reconciliation.apps.ReconciliationConfig",
    "backfill.apps.BackfillConfig",
    "jobs.apps.JobsConfig",
    "wallets.apps.WalletsConfig",
    "observability.apps.ObservabilityConfig",
    "snapshots.apps.SnapshotsConfig",
    "cutover.apps.CutoverConfig",
    "settlement.apps.SettlementConfig",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
    "csp",
    "axes",
    "mozilla_django_oidc",
]
# The demo's commands (seed_demo, setup_demo, inject_drift) write made-up
# wallets and logins: installed only where asked, by default under DEBUG
# (`make demo`); the tests turn it on to test them.
REVASSURE_DEMO = env.bool("REVASSURE_DEMO", default=DEBUG)
if REVASSURE_DEMO:
    INSTALLED_APPS.append("demo.apps.DemoConfig")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "revassure.logs.CorrelationIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "revassure.timezones.ViewerTimeZoneMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a lockout into its response.
    "axes.middleware.AxesMiddleware",
]

# Brute-force protection of password login (django-axes): after
# AXES_FAILURE_LIMIT failures for one username from one address, that pair is
# locked out for AXES_COOLOFF_HOURS; a success resets the count.
# Staff sign-in: single sign-on (mozilla-django-oidc) when OIDC_RP_CLIENT_ID is
# set; password login only where PASSWORD_LOGIN_ENABLED allows it (on under
# DEBUG, e.g. `make demo`; off by default in production).
OIDC_RP_CLIENT_ID = env.str("OIDC_RP_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_RP_CLIENT_SECRET", default="")
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("OIDC_OP_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env.str("OIDC_OP_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env.str("OIDC_OP_USER_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env.str("OIDC_OP_JWKS_ENDPOINT", default="")
OIDC_RP_SIGN_ALGO = env.str("OIDC_RP_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env.str("OIDC_RP_SCOPES", default="openid email groups")
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = env.int("OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS", default=15 * 60)
# Never sent to the provider for a refresh: probes, the job API, the refusal page.
OIDC_EXEMPT_URLS = ["healthz", "readyz", "metrics", "openapi", "sso-refused", re.compile(r"^/api/")]
SSO_ENABLED = bool(OIDC_RP_CLIENT_ID)
SSO_ALLOWED_DOMAINS = env.list("SSO_ALLOWED_DOMAINS", default=[])
SSO_GROUPS_CLAIM = env.str("SSO_GROUPS_CLAIM", default="groups")
# provider group -> role, e.g. "fin-review=finance-reviewer,fin-approve=finance-approver,sre=ops";
# empty: the provider uses our role names.
SSO_GROUP_MAP = env.dict("SSO_GROUP_MAP", default={})
PASSWORD_LOGIN_ENABLED = env.bool("PASSWORD_LOGIN_ENABLED", default=DEBUG)
LOGIN_REDIRECT_URL = "/admin/"
LOGIN_REDIRECT_URL_FAILURE = "/sso/refused/"
LOGOUT_REDIRECT_URL = "/admin/login/"


def authentication_backends(*, password_login: bool, sso: bool) -> list[str]:
    """Sign-in methods follow the configuration; permissions never do: one backend
    always reads them from the database, whichever way people sign in."""
    return [
        "axes.backends.AxesStandaloneBackend",
        (
            "django.contrib.auth.backends.ModelBackend"
            if password_login
            else "revassure.auth_backends.PermissionsOnlyBackend"
        ),
        *(["revassure.sso.StaffOIDCBackend"] if sso else []),
    ]


AUTHENTICATION_BACKENDS = authentication_backends(password_login=PASSWORD_LOGIN_ENABLED, sso=SSO_ENABLED)
if SSO_ENABLED:
    # Re-check an SSO session against the provider when its ID token expires.
    MIDDLEWARE.append("revassure.sso.SessionRefresh")
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_HOURS = env.int("AXES_COOLOFF_HOURS", default=1)
AXES_COOLOFF_TIME = AXES_COOLOFF_HOURS
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Only password attempts count: a refused SSO callback carries no username, and
# must never lock everyone behind one office address out of single sign-on.
AXES_WHITELIST_CALLABLE = "revassure.sso.not_a_password_attempt"
AXES_VERBOSE = False

ROOT_URLCONF = "revassure.urls"
WSGI_APPLICATION = "revassure.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "revassure.context_processors.freeze",
                "revassure.context_processors.sign_in",
            ],
        },
    },
]

DATABASES = {"default": env.db_url_config(DATABASE_URL)}
# Each web and worker process keeps its connection (checked before reuse)
# instead of opening one per request: a new PostgreSQL connection costs a
# backend process, and under a webhook burst that, not the work, was the cost
# (intake 89 requests/s with a connection each, see docs/scaling.md).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout keep the web process and the qcluster from failing
    # with "database is locked"; IMMEDIATE makes writers queue at BEGIN.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# Dates shown as "2026-11-26 07:45 UTC" everywhere, Django's own displays too.
FORMAT_MODULE_PATH = ["revassure.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": SHARED_STORAGE,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

STATICFILES_DIRS = [BASE_DIR / "static"]

# Transport and cookies: HTTPS only outside DEBUG. The health probes stay on
# plain HTTP for the load balancer. Trust X-Forwarded-Proto only where a proxy
# you control sets it (Cloud Run, a load balancer).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)  # a working day
CSRF_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Content security policy (django-csp): our own scripts, styles and images only.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

Q_CLUSTER = {
    "name": Q_CLUSTER_NAME,
    "workers": Q_WORKERS,
    "timeout": Q_TIMEOUT,
    "retry": Q_RETRY,
    "max_attempts": 3,
    "ack_failures": True,
    "catch_up": False,
    "recycle": 500,
    "save_limit": 1000,
    "label": "Task queue",
    # One send is one channel within OUTBOUND_DEADLINE_SECONDS; a minute more for the database.
    "ALT_CLUSTERS": {
        NOTIFY_CLUSTER_NAME: {
            "workers": 1,
            "timeout": int(OUTBOUND_DEADLINE_SECONDS) + 60,
            "retry": int(OUTBOUND_DEADLINE_SECONDS) + 120,
        }
    },
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation": {"()": "revassure.logs.CorrelationIdFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["correlation"],
        }
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    # django-q2 attaches a plain-text handler of its own unless its logger is
    # configured here; give it ours so every line is JSON.
    "loggers": {"django-q": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False}},
}
