import json

from django.core.management.base import BaseCommand, CommandError

from reconciliation.demo import demo_wallets
from revassure.firestore import get_gateway


class Command(BaseCommand):
    help = (
        "Write realistic wallets and ledgers (purchases, redemptions, refunds) to the configured "
        "Firestore, a share of them drifted and a few with malformed amounts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--wallets", type=int, default=500)
        parser.add_argument("--entries-per-wallet", type=int, default=20)
        parser.add_argument(
            "--drift-share", type=float, default=0.05, help="share of wallets with drift, 0..1"
        )
        parser.add_argument("--malformed", type=int, default=3, help="wallets given one malformed amount")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options):
        if options["wallets"] < 0 or not 0 <= options["drift_share"] <= 1 or options["malformed"] < 0:
            raise CommandError("--wallets and --malformed must be >= 0, --drift-share within 0..1")
        gateway = get_gateway()
        written = gateway.write_wallets(
            demo_wallets(
                options["wallets"],
                entries_per_wallet=options["entries_per_wallet"],
                drift_share=options["drift_share"],
                malformed=options["malformed"],
                seed=options["seed"],
            )
        )
        summary = {
            "project": gateway.project,
            "wallets": written,
            "drifted": round(options["wallets"] * options["drift_share"]),
            "malformed": min(options["malformed"], options["wallets"]),
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary, sort_keys=True))
        else:
            self.stdout.write(
                f"Seeded {written} wallets in Firestore project {gateway.project} "
                f"({summary['drifted']} drifted, {summary['malformed']} with a malformed entry)."
            )
