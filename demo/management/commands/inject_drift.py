import random
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse
from django.utils import timezone

from reconciliation import watcher
from reconciliation.models import OPEN_BREAK_STATES, Break, BreakSighting, RunTrigger, WatcherState
from revassure.firestore import FirestoreGateway, get_gateway
from revassure.ledger import is_points

CANDIDATES = 200  # wallets looked at when none is named


def link(name: str, *args: object) -> str:
    """An admin page's address on this site (SITE_URL)."""
    return settings.SITE_URL.rstrip("/") + reverse(name, args=args)


class Command(BaseCommand):
    help = (
        "Move a demo wallet's points without a ledger entry (a drift, as a buggy writer makes it), "
        "then wait for the real-time watcher to record it and say where to look. Local demos only: "
        "refused unless FIRESTORE_EMULATOR_HOST names an emulator."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--uid", help="the wallet to move (default: one picked among those without a break)"
        )
        parser.add_argument(
            "--points", type=int, default=100, help="points to add (negative: to take away); default 100"
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=10.0,
            metavar="SECONDS",
            help="wait this long for the watcher's break (0: do not wait); default 10",
        )

    def handle(
        self, *args: Any, uid: str | None = None, points: int = 100, wait: float = 10.0, **options: Any
    ) -> None:
        if not settings.FIRESTORE_EMULATOR_HOST:
            raise CommandError(
                "inject_drift writes a drift on purpose: it runs against an emulator only, and "
                "FIRESTORE_EMULATOR_HOST is not set (this would be Google's Firestore)"
            )
        if points == 0:
            raise CommandError("--points must not be 0: a drift moves the balance")
        if wait < 0:
            raise CommandError("--wait must be 0 or more seconds")
        gateway = get_gateway()
        uid = uid or self.pick(gateway)
        exists, before = gateway.get_wallet_points([uid])[uid]
        if not exists:
            raise CommandError(f"no wallet {uid!r} in Firestore project {gateway.project}")
        if not is_points(before):
            raise CommandError(f"wallet {uid!r} holds {before!r} points, not a whole number: nothing to move")
        injected_at = timezone.now()
        # The wallet's document set anew with its points moved, its ledger untouched:
        # one commit, as a writer that forgets the entry makes it.
        gateway.write_wallets([(uid, before + points, {})])
        written = time.monotonic()
        self.stdout.write(
            f"Moved wallet {uid} from {before} to {before + points} points with no ledger entry: "
            f"a drift of {points:+d} (Firestore project {gateway.project}, "
            f"emulator {settings.FIRESTORE_EMULATOR_HOST})."
        )
        wallet_page = f"{link('admin:wallet_lookup')}?uid={uid}"
        if wait:
            self.wait_for_break(gateway.project, uid, injected_at, written, wait)
        self.stdout.write(
            f"Look at: the dashboard {link('admin:index')} (open breaks, last run), the wallet "
            f"{wallet_page}, the breaks {link('admin:reconciliation_break_changelist')}?q={uid}"
        )

    def pick(self, gateway: FirestoreGateway) -> str:
        """A wallet with whole points and no open break, so the drift is news."""
        candidates = []
        for uid, value in gateway.stream_wallets():
            if is_points(value):
                candidates.append(uid)
            if len(candidates) >= CANDIDATES:
                break
        broken = set(
            Break.objects.filter(uid__in=candidates, status__in=OPEN_BREAK_STATES).values_list(
                "uid", flat=True
            )
        )
        clean = [uid for uid in candidates if uid not in broken] or candidates
        if not clean:
            raise CommandError(
                f"no wallet in Firestore project {gateway.project}: seed some first (manage.py seed_demo)"
            )
        return random.choice(clean)

    def wait_for_break(
        self, project: str, uid: str, injected_at: datetime, written: float, seconds: float
    ) -> None:
        state = WatcherState.objects.filter(project=project).first()
        health = watcher.health(state)
        if health.status != "up":
            self.stdout.write(
                f"The real-time watcher is {health.status} for project {project} ({health.text}): start "
                "`python manage.py watch_ledger` (make demo runs one) to see the drift within a second; "
                "otherwise the next reconciliation finds it."
            )
            return
        deadline = written + seconds
        while time.monotonic() < deadline:
            sighting = (
                BreakSighting.objects.filter(
                    brk__uid=uid, run__trigger=RunTrigger.WATCHER, seen_at__gte=injected_at
                )
                .select_related("brk")
                .first()
            )
            if sighting is not None:
                brk = sighting.brk
                self.stdout.write(
                    f"Found by the real-time watcher {time.monotonic() - written:.1f} s later: break "
                    f"#{brk.pk} ({brk.get_status_display()}, delta {brk.delta:+d}) "
                    f"{link('admin:reconciliation_break_change', brk.pk)}"
                )
                return
            time.sleep(0.1)
        self.stdout.write(
            f"The watcher has not recorded it within {seconds:g} s: see {project}'s watcher log "
            "(make demo: .demo/watcher.log) and the dashboard's Real-time watcher tile."
        )
