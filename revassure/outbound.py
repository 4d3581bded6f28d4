"""Calls this product makes to other services (alert webhooks, SMTP, the
certificates that sign job tokens), each with a total deadline.

A per-read timeout is no deadline: a receiver that sends one byte every 5 s
never trips a 10 s read timeout, and held every worker for minutes. Here a
watchdog shuts the connection's socket down when the call's time is up,
whatever it is doing then (connecting, the TLS handshake, waiting for the
first byte or the thousandth); the blocked read returns at once and the call
fails with DeadlineExceeded (HTTP) or the mail backend's error (SMTP).

A library whose sockets are out of reach (google-cloud-storage) is bounded
from outside instead: `within` runs its call in a thread and stops waiting at
the deadline.
"""

from __future__ import annotations

import contextvars
import functools
import http.client
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, TypeVar
from urllib.parse import urlsplit

import google.auth.exceptions
import google.auth.transport
from django.conf import settings
from django.core.mail.backends import smtp

PIECE = 1 << 16
T = TypeVar("T")


class DeadlineExceeded(OSError):
    """The call did not finish within its total deadline."""


class Watchdog:
    """Shuts down the socket `current()` returns once `seconds` have passed."""

    def __init__(self, seconds: float, current: Callable[[], socket.socket | None]):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.current = current
        self.fired = False
        self.timer: threading.Timer | None = None

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"no answer within the deadline of {self.seconds:g} s")
        return left

    def start(self) -> None:
        if self.timer is None:
            self.timer = threading.Timer(max(self.deadline - time.monotonic(), 0), self._fire)
            self.timer.daemon = True
            self.timer.start()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _fire(self) -> None:
        self.fired = True
        sock = self.current()
        if sock is not None:
            try:
                # The plain socket's shutdown, also under TLS: it wakes a blocked read at once.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


def within(seconds: float, call: Callable[[], T]) -> T:
    """call()'s result (or its exception) when it ends within `seconds`, else
    DeadlineExceeded at the deadline.

    The call runs in a daemon thread, with the caller's context (its log
    correlation id). At the deadline the caller moves on and the thread is
    abandoned: nothing outside a library can stop its read, so the thread ends
    only when the library's own per-read timeout fires or the stream does,
    holding its connection, not the worker, meanwhile."""
    outcome: list[tuple[bool, object]] = []
    done = threading.Event()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome.append((True, context.run(call)))
        except BaseException as exc:  # handed to the caller, which raises it
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="outbound-within", daemon=True).start()
    if not done.wait(seconds):
        raise DeadlineExceeded(f"no answer within the deadline of {seconds:g} s")
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]  # call's own result


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def request(
    method: str,
    url: str,
    *,
    seconds: float,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    sink: BinaryIO | None = None,
) -> Response:
    """One HTTP(S) request, answered in full within `seconds` or DeadlineExceeded.
    With `sink`, the body is written there piece by piece (and not kept)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    held: list[socket.socket] = []
    watchdog = Watchdog(seconds, lambda: held[-1] if held else None)
    try:
        sock = socket.create_connection((parts.hostname, port), timeout=watchdog.remaining())
        held.append(sock)
        watchdog.start()
        if tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
            held.append(sock)
        connection = http.client.HTTPConnection(parts.hostname, port, timeout=seconds)
        connection.sock = sock
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = b""
            if sink is None:
                data = response.read()
            else:
                while piece := response.read(PIECE):
                    sink.write(piece)
            return Response(response.status, dict(response.getheaders()), data)
        finally:
            connection.close()
    except (OSError, http.client.HTTPException) as exc:
        if watchdog.fired or isinstance(exc, DeadlineExceeded):
            raise DeadlineExceeded(f"no answer within the deadline of {seconds:g} s") from exc
        raise
    finally:
        watchdog.stop()


class GoogleAuthRequest(google.auth.transport.Request):
    """google-auth's transport (certificates, token refreshes) over `request`,
    with a total deadline per call."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        seconds = min(timeout, self.seconds) if timeout else self.seconds
        try:
            answer = request(method, url, seconds=seconds, body=body, headers=headers)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise google.auth.exceptions.TransportError(f"{url}: {exc}") from exc
        return _GoogleAuthResponse(answer)


class _GoogleAuthResponse(google.auth.transport.Response):
    def __init__(self, answer: Response):
        self.answer = answer

    @property
    def status(self) -> int:
        return self.answer.status

    @property
    def headers(self) -> dict[str, str]:
        return self.answer.headers

    @property
    def data(self) -> bytes:
        return self.answer.body


# What the mixin is mixed into, for the type checker (at run time the classes below add it).
if TYPE_CHECKING:
    _SMTPClient = smtplib.SMTP
else:
    _SMTPClient = object


class _DeadlineSMTPMixin(_SMTPClient):
    """smtplib's client whose whole conversation (greeting to QUIT) ends by the
    deadline: the watchdog starts with the first reply read (the socket exists
    by then) and follows the socket through STARTTLS."""

    def __init__(self, *args, seconds: float, **kwargs):
        self.watchdog = Watchdog(seconds, lambda: getattr(self, "sock", None))
        super().__init__(*args, **kwargs)

    def getreply(self) -> tuple[int, bytes]:
        self.watchdog.start()
        return super().getreply()

    def close(self) -> None:
        self.watchdog.stop()
        super().close()


class DeadlineSMTP(_DeadlineSMTPMixin, smtplib.SMTP):
    pass


class DeadlineSMTPSSL(_DeadlineSMTPMixin, smtplib.SMTP_SSL):
    pass


class SMTPBackend(smtp.EmailBackend):
    """Django's SMTP backend (same settings), each connection under a total deadline."""

    def __init__(self, *args, seconds: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.seconds = seconds or settings.OUTBOUND_DEADLINE_SECONDS
        if not self.timeout or self.timeout > self.seconds:
            # The stubs say int; smtplib (and Django's EMAIL_TIMEOUT) take float seconds.
            self.timeout = self.seconds  # type: ignore[assignment]  # connecting, too, within the deadline

    @property
    def connection_class(self) -> Callable[..., smtplib.SMTP]:
        return functools.partial(DeadlineSMTPSSL if self.use_ssl else DeadlineSMTP, seconds=self.seconds)
