"""Settings for revassure: environment variables only, each read once, here
(how Django runs: database, apps, sign-in, security, the task queue, logs) and
in revassure/product_settings.py (what revassure itself does: Firestore, files,
snapshots, reconciliation, breaks, heals, webhooks, settlement, jobs, alerts),
which this module takes whole.

Every variable has a safe local default (SQLite, the django-q2 ORM broker, the
local Firestore emulator) or none at all where a default would be unsafe
(`SECRET_KEY` when `DEBUG` is off). `NAME_FILE` works for every variable, so
secrets can come from files mounted by Secret Manager.
"""

import re

from django.core.exceptions import ImproperlyConfigured

from revassure.environment import BASE_DIR, DEBUG, env
from revassure.product_settings import *  # noqa: F403
from revassure.product_settings import (
    NOTIFY_CLUSTER_NAME,
    OUTBOUND_DEADLINE_SECONDS,
    Q_CLUSTER_NAME,
    Q_RETRY,
    Q_TIMEOUT,
    Q_WORKERS,
    SHARED_STORAGE,
)

# A development key is only acceptable while DEBUG is on; production must set one.
SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key" if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
DATABASE_URL = env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
REDIS_URL = env.str("REDIS_URL", default="")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")


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
