import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from demo.statement import write_demo_statement
from demo.wallets import demo_wallets, seed_history
from reconciliation.models import ReconciliationRun
from revassure.firestore import get_gateway


class Command(BaseCommand):
    help = (
        "Write realistic wallets and ledgers (purchases, redemptions, refunds) to the configured "
        "Firestore, a share of them drifted and a few with malformed amounts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--wallets", type=int, default=500)
        parser.add_argument("--entries-per-wallet", type=int, default=20)
        parser.add_argument(
            "--drift-share", type=float, default=0.05, help="share of wallets with drift, 0..1"
        )
        parser.add_argument("--malformed", type=int, default=3, help="wallets given one malformed amount")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument(
            "--history",
            type=int,
            default=0,
            metavar="DAYS",
            help="also seal one full run a day for DAYS days before today, from these wallets "
            "(trigger 'demo'), so the dashboard's chart has a shape; only into a database without runs",
        )
        parser.add_argument(
            "--statement",
            metavar="PATH",
            help="also write a PayNow settlement statement for these wallets to PATH: it settles "
            "their purchases but for a few breaks of each kind (some through stored webhook deliveries)",
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["wallets"] < 0 or not 0 <= options["drift_share"] <= 1 or options["malformed"] < 0:
            raise CommandError("--wallets and --malformed must be >= 0, --drift-share within 0..1")
        if not 0 <= options["history"] <= 366:
            raise CommandError("--history must be within 0..366 days")
        if options["history"] and ReconciliationRun.objects.exists():
            raise CommandError("--history goes before every real run: this database has runs already")
        gateway = get_gateway()
        wallets = list(
            demo_wallets(
                options["wallets"],
                entries_per_wallet=options["entries_per_wallet"],
                drift_share=options["drift_share"],
                malformed=options["malformed"],
                seed=options["seed"],
            )
        )
        written = gateway.write_wallets(wallets)
        history = seed_history(wallets, days=options["history"], gateway=gateway, now=timezone.now())
        statement = None
        if options["statement"]:
            breaks = write_demo_statement(
                wallets, Path(options["statement"]), gateway=gateway, now=timezone.now(), seed=options["seed"]
            )
            statement = {"path": options["statement"], **breaks}
        summary = {
            "project": gateway.project,
            "wallets": written,
            "drifted": round(options["wallets"] * options["drift_share"]),
            "malformed": min(options["malformed"], options["wallets"]),
            "history_runs": [run.pk for run in history],
            **({"statement": statement} if statement else {}),
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary, sort_keys=True))
        else:
            self.stdout.write(
                f"Seeded {written} wallets in Firestore project {gateway.project} "
                f"({summary['drifted']} drifted, {summary['malformed']} with a malformed entry)."
            )
            if statement:
                self.stdout.write(
                    f"Wrote a PayNow settlement statement to {statement['path']} "
                    f"({statement['matched']} matching rows and a few breaks of each kind)."
                )
            if history:
                self.stdout.write(
                    f"Sealed {len(history)} runs of seeded history, one a day from "
                    f"{history[0].started_at:%Y-%m-%d} (trigger 'demo')."
                )
