import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from revassure.firestore import get_gateway
from revassure.sealing import chain


class Command(BaseCommand):
    help = (
        "Recompute every sealed report's checksum (every registered kind: reconciliation runs, settlement "
        "runs, cutover records, each in its own chain), follow the hash chains and compare each Firestore "
        "mirror with its report, field by field and document by document. Exits 2 and names the run (and "
        "the field or document that differs) when anything does not hold."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        parser.add_argument(
            "--skip-firestore", action="store_true", help="check the database only, not the Firestore mirrors"
        )
        parser.add_argument(
            "--rederive",
            type=int,
            metavar="RUN_ID",
            help="re-derive this run's findings from Firestore at its read time and compare them with "
            "its sealed report (exit 0 same, 2 different, 1 outside the read-time window or read live)",
        )

    def handle(
        self,
        *args: Any,
        json: bool = False,
        skip_firestore: bool = False,
        rederive: int | None = None,
        **options: Any,
    ) -> None:
        if rederive is not None:
            return self._rederive(rederive, as_json=json)
        gateway = None if skip_firestore else get_gateway()
        checked, problems = chain.verify_all(gateway=gateway)
        if json:
            self.stdout.write(
                _dumps(
                    {
                        "ok": not problems,
                        "runs_checked": checked,
                        "problems": [p.as_json() for p in problems],
                    }
                )
            )
        else:
            for problem in problems:
                self.stderr.write(str(problem))
            if not problems:
                self.stdout.write(f"{checked} reports verified: every checksum, chain link and mirror holds.")
        if problems:
            raise CommandError(f"{len(problems)} problem(s) in {checked} reports", returncode=2)

    def _rederive(self, run_id: int, *, as_json: bool):
        # The app whose runs have an instant does the work (reconciliation/rederive.py,
        # registered with the kernel); the outcome is the exit status.
        rederive = chain.rederiver("reconciliation")
        if rederive is None:
            raise CommandError("no report kind can be re-derived here")
        found = rederive(run_id, gateway=get_gateway())
        self.stdout.write(_dumps(found.as_json()) if as_json else found.message)
        for difference in [] if as_json else found.differences:
            self.stderr.write(difference)
        if found.outcome:
            raise CommandError(found.message, returncode=int(found.outcome))


def _dumps(data: dict) -> str:
    # A mirror's value may be of a type JSON lacks (a timestamp someone wrote there): as text.
    return json.dumps(data, sort_keys=True, default=str)
