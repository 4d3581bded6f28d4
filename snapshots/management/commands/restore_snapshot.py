import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from revassure.files import BadLocation
from revassure.firestore import FirestoreError
from revassure.formatting import points
from revassure.logs import bound_correlation_id
from snapshots import services
from snapshots.restore import RestoreRefused


class Command(BaseCommand):
    help = (
        "Load a verified snapshot (a directory, or gs://bucket/prefix) into a Firestore project, "
        "document for document (same ids, same "
        "field types): only a project listed in RESTORE_ALLOWED_PROJECTS and never the production "
        "one, only an intact snapshot, and only into an empty project unless --replace (which "
        "deletes what the project holds under the snapshot's collections first)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", metavar="PATH")
        parser.add_argument("--project", required=True, metavar="ID", help="the Firestore project to load")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="delete the documents the project holds under the snapshot's collections first",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    def handle(
        self, *args: Any, path: str, project: str, replace: bool = False, json: bool = False, **options: Any
    ) -> None:
        with bound_correlation_id():
            try:
                restore = services.restore(path, project=project, replace=replace, actor=None)
            except RestoreRefused as exc:
                raise CommandError(f"refused, nothing written: {exc}") from exc
            except FirestoreError as exc:
                raise CommandError(
                    f"{services.readable(exc)}; if anything was written, run it again with --replace "
                    "to start clean"
                ) from exc
            except BadLocation as exc:
                raise CommandError(f"refused, nothing written: {exc}") from exc
            except OSError as exc:  # Cloud Storage refusing or out of reach: nothing was read
                raise CommandError(f"the snapshot could not be read: {exc}") from exc
        if json:
            self.stdout.write(
                _dumps(
                    {
                        "path": restore.path,
                        "project": restore.project,
                        "deleted": restore.deleted,
                        "written": restore.written,
                    }
                )
            )
        else:
            removed = f" after deleting {points(restore.deleted)} it held" if replace else ""
            self.stdout.write(
                f"Restored {points(restore.written)} documents into {project}{removed}, from {restore.path}."
            )


def _dumps(data: dict) -> str:
    return json.dumps(data, sort_keys=True)
