"""Settings for the server and the qcluster the browser tests start (test-only).

The production settings, DEBUG off, with three changes a test server needs:
static files served by WhiteNoise straight from the source folders (no
collectstatic manifest), a fast password hasher, and session and CSRF cookies
that plain HTTP on the loopback carries.
"""

from revassure.settings import *  # noqa: F403
from revassure.settings import STORAGES

STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
