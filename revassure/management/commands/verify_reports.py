import json

from django.core.management.base import BaseCommand, CommandError

from revassure.firestore import get_gateway
from revassure.sealing import chain


class Command(BaseCommand):
    help = (
        "Recompute every sealed report's checksum (every registered kind: reconciliation runs, settlement "
        "runs, cutover records, each in its own chain), follow the hash chains and compare each Firestore "
        "mirror with its report, field by field and document by document. Exits 2 and names the run (and "
        "the field or document that differs) when anything does not hold."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        parser.add_argument(
            "--skip-firestore", action="store_true", help="check the database only, not the Firestore mirrors"
        )

    def handle(self, *args, json: bool = False, skip_firestore: bool = False, **options):
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


def _dumps(data: dict) -> str:
    # A mirror's value may be of a type JSON lacks (a timestamp someone wrote there): as text.
    return json.dumps(data, sort_keys=True, default=str)
