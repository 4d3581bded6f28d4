"""Reads of what revassure keeps in Firestore besides the ledger: the mirrored
reports (reconciliation and settlement, with their violations and rows) and
the config documents; and the readiness probe's one quick read. Through the
public client, each call under the gateway's retry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from revassure.firestore.client import Connection
from revassure.firestore.model import CONFIG, REPORTS, SETTLEMENT_REPORTS, SETTLEMENT_ROWS, VIOLATIONS


class ReportReads:
    def __init__(self, connection: Connection):
        self.connection = connection

    def get_report(self, run_id: str) -> dict[str, Any] | None:
        snap = (
            self.connection.client.collection(REPORTS)
            .document(run_id)
            .get(retry=self.connection.retry, timeout=self.connection.call_timeout)
        )
        return snap.to_dict() if snap.exists else None

    def stream_reports(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for snap in self.connection.client.collection(REPORTS).stream(
            retry=self.connection.retry, timeout=self.connection.call_timeout
        ):
            yield snap.id, snap.to_dict() or {}  # a streamed document exists: never None

    def stream_settlement_reports(self) -> Iterator[tuple[str, dict[str, Any]]]:
        collection = self.connection.client.collection(SETTLEMENT_REPORTS)
        for snap in collection.stream(retry=self.connection.retry, timeout=self.connection.call_timeout):
            yield snap.id, snap.to_dict() or {}  # a streamed document exists: never None

    def stream_report_violations(self, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(uid, fields) of each violation document mirrored under `reconciliationReports/{run_id}`."""
        yield from self._stream_children(REPORTS, run_id, VIOLATIONS)

    def stream_settlement_report_rows(self, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(row id, fields) of each row document mirrored under `settlementReports/{run_id}`."""
        yield from self._stream_children(SETTLEMENT_REPORTS, run_id, SETTLEMENT_ROWS)

    def _stream_children(self, root: str, parent: str, sub: str) -> Iterator[tuple[str, dict[str, Any]]]:
        collection = self.connection.client.collection(root).document(parent).collection(sub)
        for snap in collection.stream(retry=self.connection.retry, timeout=self.connection.call_timeout):
            yield snap.id, snap.to_dict()

    def ping(self, timeout: float = 3.0) -> None:
        """One quick read, no retries: raises unless Firestore answers (readiness probes)."""
        self.connection.client.collection(CONFIG).document("adjustments").get(retry=None, timeout=timeout)

    def get_config(self, name: str) -> dict[str, Any] | None:
        snap = (
            self.connection.client.collection(CONFIG)
            .document(name)
            .get(retry=self.connection.retry, timeout=self.connection.call_timeout)
        )
        return snap.to_dict() if snap.exists else None
