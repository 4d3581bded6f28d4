"""The payment provider's events: signature check, parsing, ledger identities.

Envelope (JSON, one per line in export files):

    {"id": "evt_…", "type": "payment.succeeded" | "payment.refunded" | "payment.chargeback",
     "created": "2026-11-20T10:00:00Z",
     "data": {"payment_id": "…", "user_id": "…", "points": 120,
              "refund_id" | "chargeback_id": "…" (reversals only)}}

The ledger entry id derives from the business identity (payment, refund or
chargeback id), never from the delivery, so a resent event, or the same
payment under another event id, can never credit twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime

from revassure.ledger import is_points
from revassure.policy import MAX_POINTS
from revassure.timezones import OUT_OF_RANGE, in_utc

PAYMENT = "payment.succeeded"
REFUND = "payment.refunded"
CHARGEBACK = "payment.chargeback"
TYPES = (PAYMENT, REFUND, CHARGEBACK)
SIGNATURE_TOLERANCE_SECONDS = 300
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # matched whole (fullmatch): no trailing newline
UTF8_BOM = b"\xef\xbb\xbf"


class BadSignature(Exception):
    pass


class Unusable(Exception):
    """A well-formed delivery whose content cannot be applied; the message says why."""


def verify_signature(header: str, body: bytes, secrets: list[str], *, now: float | None = None) -> int:
    """Check `PayNow-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]` over "<t>.<raw body>".

    Any configured secret may match (so secrets can be rotated); the timestamp
    must be within five minutes either way. Returns the timestamp.
    """
    if not secrets:
        raise BadSignature("no webhook secret is configured")
    parts = [item.split("=", 1) for item in header.split(",") if "=" in item]
    timestamps = [value for key, value in parts if key.strip() == "t"]
    signatures = [value.strip() for key, value in parts if key.strip() == "v1"]
    if len(timestamps) != 1 or not timestamps[0].strip().isdigit() or not signatures:
        raise BadSignature("malformed PayNow-Signature header")
    timestamp = int(timestamps[0])
    now = time.time() if now is None else now
    if abs(now - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        raise BadSignature("signature timestamp is outside the 5-minute tolerance")
    signed = str(timestamp).encode() + b"." + body
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            return timestamp
    raise BadSignature("no signature matches")


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The header value the provider would send (tests, and replays of exports)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass(frozen=True)
class ProviderEvent:
    event_id: str
    type: str
    created: datetime
    payment_id: str
    user_id: str
    points: int
    reversal_id: str = ""  # the refund or chargeback id

    @property
    def entry_id(self) -> str:
        """The ledger entry this event creates."""
        return entry_id_of(self.type, self.payment_id, self.reversal_id)

    @property
    def original_entry_id(self) -> str:
        return purchase_entry_id(self.payment_id)

    @property
    def amount(self) -> int:
        return self.points if self.type == PAYMENT else -self.points


def purchase_entry_id(payment_id: str) -> str:
    return f"purchase-{payment_id}"


def entry_id_of(kind: str, payment_id: str, reversal_id: str = "") -> str:
    """The ledger entry id of a business identity: `purchase-{payment id}` for a
    payment, `refund-{refund id}` / `chargeback-{chargeback id}` for a reversal.
    The one rule: replays, the webhook and settlement statements all use it."""
    if kind == PAYMENT:
        return purchase_entry_id(payment_id)
    if kind not in (REFUND, CHARGEBACK):
        raise ValueError(f"unknown event type {kind!r}")
    return f"{'refund' if kind == REFUND else 'chargeback'}-{reversal_id}"


def text_of(raw: bytes | str) -> str:
    """The text of a body or an export line, by the one rule every intake uses:
    UTF-8, a leading byte-order mark ignored (RFC 8259 allows it, Excel and
    some proxies add it). Anything else is Unusable."""
    if isinstance(raw, bytes):
        try:
            raw = raw.removeprefix(UTF8_BOM).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Unusable(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    return raw.removeprefix("\ufeff")


def parse(raw: bytes | str) -> ProviderEvent:
    """A provider event from its body (bytes) or stored text; Unusable says
    precisely what is wrong. The webhook, replays of files and replays of
    stored deliveries all go through here, so they can never disagree."""
    data = _json(text_of(raw))
    if not isinstance(data, dict):
        raise Unusable("not a JSON object")
    event_id = data.get("id")
    if not isinstance(event_id, str) or not ID_PATTERN.fullmatch(event_id):
        raise Unusable("missing or malformed event id")
    kind = data.get("type")
    if kind not in TYPES:
        raise Unusable(f"unknown event type {printable(kind)}")
    created = _timestamp(data.get("created"))
    body = data.get("data")
    if not isinstance(body, dict):
        raise Unusable("missing data object")
    payment_id = _identifier(body, "payment_id")
    user_id = _identifier(body, "user_id")
    points = body.get("points")
    if not is_points(points) or points <= 0:
        raise Unusable(f"points must be a positive integer, got {printable(points)}")
    if points > MAX_POINTS:
        raise Unusable(
            f"points out of range: {points} is above the largest amount a ledger holds ({MAX_POINTS})"
        )
    reversal_id = ""
    if kind != PAYMENT:
        reversal_id = _identifier(body, "refund_id" if kind == REFUND else "chargeback_id")
    return ProviderEvent(event_id, kind, created, payment_id, user_id, points, reversal_id)


def best_effort_id(raw: bytes | str) -> str:
    """The event id of a body that does not parse as a whole, when it has one,
    made safe to store and show (no control characters, at most 128 long)."""
    try:
        data = _json(text_of(raw))
    except Unusable:
        return ""
    event_id = data.get("id") if isinstance(data, dict) else None
    return printable(event_id, quote=False)[:128] if isinstance(event_id, str) else ""


def printable(value: object, *, quote: bool = True, limit: int = 80) -> str:
    """A value from a delivery, safe in a reason or a column: control characters
    (NUL among them, which PostgreSQL text refuses) escaped, length bounded."""
    text = repr(value) if quote else str(value)
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Unusable(f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise Unusable("not JSON: nested too deeply") from exc


def _identifier(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise Unusable(f"missing or malformed {name}")
    return value


def _timestamp(value) -> datetime:
    if not isinstance(value, str):
        raise Unusable("missing created timestamp")
    try:
        created = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Unusable(f"malformed created timestamp {printable(value)}") from exc
    if created.tzinfo is None:
        raise Unusable("created timestamp has no time zone")
    utc = in_utc(created)
    if utc is None:
        raise Unusable(f"created timestamp {printable(value)} {OUT_OF_RANGE}")
    return utc
