"""What the gateway raises when Firestore fails: errors of our own, so that no
caller outside revassure/firestore/ needs to know google-api-core's.

Every public operation of `FirestoreGateway` raises one of these, with the
library's error as its `__cause__`, once its own retries are spent:

- FirestoreUnavailable: out of reach, too slow, or overloaded (the retry
  deadline passed): worth trying again later;
- FirestoreContention: other transactions kept winning the same documents
  until the deadline: worth trying again later;
- FirestoreRefused: Firestore said no (a permission, a bad request, a missing
  or existing document, a failed precondition): trying again will not help.
"""

from __future__ import annotations

from google.api_core import exceptions as gexc

UNAVAILABLE = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.ResourceExhausted,
    gexc.RetryError,
    gexc.InternalServerError,
    gexc.Unknown,
    gexc.GatewayTimeout,
)


class FirestoreError(Exception):
    """Firestore failed; `str()` is one line a person can read."""


class FirestoreUnavailable(FirestoreError):
    pass


class FirestoreContention(FirestoreError):
    pass


class FirestoreRefused(FirestoreError):
    pass


def translated(exc: gexc.GoogleAPIError) -> FirestoreError:
    """The gateway's error for a google-api-core one."""
    said = " ".join(str(exc).split())
    text = said or type(exc).__name__
    if isinstance(exc, gexc.Aborted):
        return FirestoreContention(text)
    if isinstance(exc, UNAVAILABLE):
        return FirestoreUnavailable(text)
    return FirestoreRefused(text)
