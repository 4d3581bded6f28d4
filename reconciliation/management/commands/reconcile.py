import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconciliation import reports, services
from reconciliation.models import ReadMode, ReconciliationRun, RunStatus, RunTrigger
from revassure.firestore import get_gateway
from revassure.flags import FeatureDisabled
from revassure.logs import bound_correlation_id


def run_summary(run: ReconciliationRun, *, with_violations: bool = True) -> dict:
    summary = reports.run_summary(run)
    if with_violations:
        summary["violations"] = [
            {
                "uid": v.uid,
                "wallet_points": v.wallet_points,
                "ledger_sum": v.ledger_sum,
                "delta": v.delta,
                "entries": v.entries,
                "kind": v.kind,
            }
            for v in run.violations.order_by("uid").iterator()
        ]
    return summary


class Command(BaseCommand):
    help = (
        "Check wallet.points against sum(ledger.amount) for every wallet (or the given uids). "
        "Exits 0 when the run completed, whatever it found; non-zero when it could not run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--uid", action="append", dest="uids", metavar="UID", help="check only this wallet"
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="hand the run to the django-q workers instead of running here",
        )

    def handle(
        self,
        *args: Any,
        uids: list[str] | None = None,
        json: bool = False,
        enqueue: bool = False,
        **options: Any,
    ) -> None:
        # A command run is a run of its own: one correlation id for all its log lines.
        with bound_correlation_id():
            self._handle(uids=uids, as_json=json, enqueue=enqueue)

    def _handle(self, *, uids, as_json: bool, enqueue: bool):
        try:
            if enqueue:
                run = services.request_run(actor=None, trigger=RunTrigger.COMMAND, uids=uids)
            else:
                run = services.run_inline(
                    actor=None, trigger=RunTrigger.COMMAND, gateway=get_gateway(), uids=uids
                )
        except FeatureDisabled as exc:
            raise CommandError(f"reconciliation refused: {exc}", returncode=3) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except Exception as exc:
            raise CommandError(f"reconciliation could not run: {type(exc).__name__}: {exc}") from exc
        self._report(run, as_json=as_json)
        if run.status == RunStatus.FAILED:
            raise CommandError(f"run {run.pk} failed: {run.error}")

    def _report(self, run, *, as_json: bool):
        if as_json:
            self.stdout.write(_dumps(run_summary(run)))
            return
        if run.status == RunStatus.PENDING:
            self.stdout.write(f"Run {run.pk} queued for the workers.")
            return
        self.stdout.write(
            f"Run {run.pk} {run.status}: {run.wallets_checked} wallets checked, "
            f"{run.violations_count} violations ({run.drift_count} drift, {run.malformed_count} malformed), "
            f"total absolute drift {run.total_abs_drift}, "
            f"liability difference {run.liability_difference}. Checksum {run.checksum or '-'}"
        )
        if run.read_mode == ReadMode.POINT_IN_TIME:
            self.stdout.write(f"Read at one instant T0 = {run.read_time.isoformat()}.")
        elif run.read_mode:
            self.stdout.write(f"Read live: {run.read_mode_reason}.")


def _dumps(data: dict) -> str:
    return json.dumps(data, sort_keys=True)
