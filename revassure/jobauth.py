"""Who may call the job endpoints: a Google-signed OIDC ID token, checked here.

Cloud Scheduler sends `Authorization: Bearer <ID token>` minted for a service
account. The token's signature is checked against the issuer's published keys
(JOBS_OIDC_CERTS_URL), then its issuer, audience and expiry (with a small
clock skew), then that its email is verified and allowed. A missing or bad
token is 401; a good token from a caller not allowed is 403.
"""

from dataclasses import dataclass

import google.auth.exceptions
from django.conf import settings
from google.oauth2 import id_token

from revassure import outbound


class Unauthenticated(Exception):
    """No valid token: answer 401."""


class Forbidden(Exception):
    """A valid token from a caller who may not do this: answer 403."""


@dataclass(frozen=True)
class Caller:
    email: str
    subject: str


def authenticate(authorization: str) -> Caller:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("an Authorization: Bearer <Google-signed ID token> header is required")
    if not settings.JOBS_OIDC_AUDIENCE:
        raise Unauthenticated("job endpoints are not configured (JOBS_OIDC_AUDIENCE is empty)")
    try:
        claims = id_token.verify_token(
            token.strip(),
            # The certificates' fetch ends within the deadline, however slow the issuer.
            outbound.GoogleAuthRequest(settings.OUTBOUND_DEADLINE_SECONDS),
            audience=settings.JOBS_OIDC_AUDIENCE,
            certs_url=settings.JOBS_OIDC_CERTS_URL,
            clock_skew_in_seconds=settings.JOBS_CLOCK_SKEW_SECONDS,
        )
    except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        raise Unauthenticated(f"invalid ID token: {exc}") from exc
    if claims.get("iss") not in settings.JOBS_OIDC_ISSUERS:
        raise Unauthenticated(f"invalid ID token: issuer {claims.get('iss')!r} is not trusted")
    email = claims.get("email") or ""
    if not email or claims.get("email_verified") is not True:
        raise Forbidden("the token carries no verified email")
    if email.lower() not in {allowed.lower() for allowed in settings.JOBS_ALLOWED_EMAILS}:
        raise Forbidden(f"{email} may not call the job endpoints")
    return Caller(email=email, subject=claims.get("sub", ""))
