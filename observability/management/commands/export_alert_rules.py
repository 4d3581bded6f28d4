import json
import os
import tempfile
from argparse import ArgumentTypeError
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from observability.rule_export import (
    Options,
    Setting,
    default_settings,
    exported_rules,
    settings_from_database,
)
from observability.rule_formats import FORMATS, cloud_monitoring_policies, prometheus_rule_file


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"a number, not {text!r}") from None
    if not value > 0:
        raise ArgumentTypeError(f"must be above 0, not {text}")
    return value


class Command(BaseCommand):
    help = (
        "Write the alert rules for an outside system: the app's rules (its numbers from the database) "
        "and those only an outside system can evaluate, as a Prometheus rule file or as Cloud "
        "Monitoring alert policies with PromQL conditions (docs/observability.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", required=True, choices=FORMATS)
        parser.add_argument(
            "--output",
            metavar="FILE",
            help="write here rather than to stdout; for cloud-monitoring, a directory (existing, or "
            "a name ending with /) gets one file per policy (<alert>.json)",
        )
        parser.add_argument(
            "--defaults", action="store_true", help="the shipped thresholds, without reading the database"
        )
        parser.add_argument("--job", default="revassure", help="the scrape job's name (default revassure)")
        parser.add_argument("--group", default="revassure", help="the rule group's name (default revassure)")
        parser.add_argument(
            "--interval", type=positive, default=60.0, metavar="SECONDS", help="evaluation interval (60)"
        )
        parser.add_argument(
            "--watcher-silence",
            type=positive,
            default=60.0,
            metavar="MINUTES",
            help="alert when the watcher has seen no write for this long (60): your quietest time",
        )
        parser.add_argument(
            "--time-scale",
            type=positive,
            default=1.0,
            metavar="FACTOR",
            help="multiply every duration by this (tests and demos: 0.01 makes 5 minutes 3 s)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        settings, source = self.settings(options["defaults"])
        chosen = Options(
            job=options["job"],
            group=options["group"],
            interval=options["interval"],
            watcher_silence_minutes=options["watcher_silence"],
            time_scale=options["time_scale"],
        )
        rules = exported_rules(settings, chosen)
        output = Path(options["output"]) if options["output"] else None
        # A directory: one there, or a name ending with a slash (made, in a folder that exists).
        folder = output is not None and (output.is_dir() or options["output"].endswith(("/", os.sep)))
        if options["format"] == "prometheus":
            if folder:
                raise CommandError(f"--output {options['output']} is a directory: name the rule file")
            files = {output: prometheus_rule_file(rules, chosen, source=source)}
        else:
            policies = cloud_monitoring_policies(rules, chosen)
            if folder:
                assert output is not None  # a folder was named
                make_folder(output)
                files = {output / f"{r.alert}.json": dumps(p) for r, p in zip(rules, policies, strict=True)}
            else:
                files = {output: dumps(policies)}
        for path, text in files.items():
            if path is None:
                self.stdout.write(text, ending="")
            else:
                write(path, text)
        if output is not None:
            self.stderr.write(f"{len(rules)} rules written to {output} ({source})")

    def settings(self, defaults: bool) -> tuple[dict[str, Setting], str]:
        if defaults:
            return default_settings(), "the shipped default thresholds"
        try:
            return settings_from_database(), "thresholds from the database's alert rules"
        except DatabaseError as exc:
            raise CommandError(
                f"cannot read the alert rules from the database ({exc}): run migrate, or pass --defaults"
            ) from exc


def dumps(value: object) -> str:
    return json.dumps(value, indent=2) + "\n"


def make_folder(path: Path) -> None:
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot make the folder {path}: {exc}") from exc


def write(path: Path, text: str) -> None:
    """Whole or not at all: a file that was there stays as it was if this fails."""
    folder = path.parent
    if not folder.is_dir():
        raise CommandError(f"cannot write {path}: there is no folder {folder}")
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
        with os.fdopen(handle, "w") as out:
            out.write(text)
        # Readable by a Prometheus running as another user, as a file written by hand would be.
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        raise CommandError(f"cannot write {path}: {exc}") from exc
