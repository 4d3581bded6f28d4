"""Firestore's own managed export of the whole database to Cloud Storage
(Google Cloud's Firestore Admin API; no emulator has it), started beside a
JSON Lines snapshot and followed by its long-running operation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from google.cloud.firestore_admin_v1 import ExportDocumentsRequest, FirestoreAdminClient
from google.longrunning import operations_pb2

from revassure.firestore.client import Connection


class ManagedExportUnavailable(Exception):
    """Managed export needs Google Cloud's Firestore Admin API."""


@dataclass(frozen=True)
class ManagedExport:
    operation: str  # the long-running operation's name
    state: str  # PROCESSING, SUCCESSFUL, FAILED, ... as the Admin API says


class ManagedExports:
    def __init__(self, connection: Connection):
        self.connection = connection

    def start_managed_export(self, bucket: str, *, snapshot_time: datetime | None = None) -> ManagedExport:
        """Start Firestore's own export of the whole database to `bucket`
        (gs://...), as of `snapshot_time` (rounded down to the minute, as the
        Admin API wants); returns the long-running operation's name and state."""
        admin = self._admin_client()
        request = ExportDocumentsRequest(name=self.connection.database, output_uri_prefix=bucket)
        if snapshot_time is not None:
            # proto-plus marshals a datetime into the Timestamp field; its annotation names only Timestamp.
            request.snapshot_time = snapshot_time.replace(second=0, microsecond=0)  # type: ignore[assignment]
        operation = admin.export_documents(
            request=request, retry=self.connection.retry, timeout=self.connection.call_timeout
        )
        metadata = operation.metadata
        state = metadata.operation_state.name if metadata is not None else "PROCESSING"
        return ManagedExport(operation=operation.operation.name, state=state)

    def managed_export_state(self, operation: str) -> str:
        """DONE, FAILED: <why>, or RUNNING, for an export started earlier."""
        answer = self._admin_client().get_operation(
            operations_pb2.GetOperationRequest(name=operation),
            retry=self.connection.retry,
            timeout=self.connection.call_timeout,
        )
        if not answer.done:
            return "RUNNING"
        return f"FAILED: {answer.error.message}" if answer.HasField("error") else "DONE"

    def _admin_client(self) -> FirestoreAdminClient:
        if os.environ.get("FIRESTORE_EMULATOR_HOST"):
            raise ManagedExportUnavailable(
                "managed export needs Google Cloud (the Firestore Admin API), which the emulator does not "
                "have: the JSON Lines snapshot is the only one taken here"
            )
        return FirestoreAdminClient()  # Google's, default credentials
