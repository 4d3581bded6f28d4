import json
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reconciliation.watcher import Watcher
from revassure.firestore import get_gateway


class Command(BaseCommand):
    help = (
        "Watch Firestore's writes of wallets and ledger entries and record each drift as it "
        "happens (docs/realtime.md). Runs until stopped (SIGINT or SIGTERM)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json", action="store_true", help="print one JSON object per drift found, one per line"
        )
        parser.add_argument(
            "--debounce",
            type=float,
            metavar="SECONDS",
            help="check a wallet this long after the first write of a burst (WATCHER_DEBOUNCE_SECONDS)",
        )

    def handle(self, *args: Any, json: bool = False, debounce: float | None = None, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())

        def printed(drift: dict) -> None:
            if json:
                self.stdout.write(dumps(drift))
                self.stdout.flush()
            else:
                self.stdout.write(
                    f"drift: {drift['uid']} delta {drift['delta']} ({drift['kind']}), "
                    f"break {drift['break_id']}, written {drift['write_time']}"
                )

        Watcher(gateway=get_gateway(), on_drift=printed, debounce=debounce).run(stop)


def dumps(value: dict) -> str:
    return json.dumps(value, sort_keys=False)
