import json
import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cutover import background, record, runbook, services
from cutover.models import Cutover
from cutover.runbook import CutoverRefused
from reconciliation.models import RunTrigger
from revassure.firestore import get_gateway


class Command(BaseCommand):
    help = (
        "Drive the cutover runbook from a shell: status, start, confirm STEP, abort. The actor is "
        "--actor USERNAME, or REVASSURE_ACTOR from the environment. With --json, the cutover's "
        "record (the same as the admin's Download JSON) is printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        status = sub.add_parser("status", help="the cutover in progress, or the latest one")
        status.add_argument("--id", type=int, default=None, help="another cutover, by id")
        start = sub.add_parser("start", help="start a cutover (ops)")
        start.add_argument("--name", required=True)
        start.add_argument("--target", required=True, help="the environment, e.g. production")
        start.add_argument("--monitor-minutes", type=int, default=120)
        confirm = sub.add_parser("confirm", help="confirm the next step (the product performs its own)")
        confirm.add_argument(
            "step", help="freeze, snapshot, reconcile, promote, switch_webhooks, monitor, unfreeze"
        )
        confirm.add_argument("--note", default="")
        confirm.add_argument("--revision", default="", help="the promoted image or revision id")
        confirm.add_argument("--override", default="", help="why monitoring ends early or with alerts")
        confirm.add_argument("--accept", default="", help="a finance approver's reason to accept violations")
        abort = sub.add_parser("abort", help="abort the cutover in progress (ops)")
        abort.add_argument("--reason", required=True)
        abort.add_argument("--unfreeze", action="store_true", help="lift the freeze the cutover made")
        abort.add_argument("--flags-off", default="", help="feature flags to turn off, comma separated")
        for each in (status, start, confirm, abort):
            each.add_argument("--actor", default=None, help="username recorded as who did it")
            each.add_argument("--json", action="store_true")

    def handle(
        self, *args: Any, action: str, json: bool = False, actor: str | None = None, **options: Any
    ) -> None:
        try:
            if action == "status":
                cutover = self._status(options["id"])
            else:
                user = _actor(actor)
                cutover = getattr(self, f"_{action}")(user, **options)
        except (CutoverRefused, PermissionError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(_dumps(record.export(cutover)) if json else _describe(cutover))

    def _status(self, cutover_id: int | None) -> Cutover:
        found = Cutover.objects.filter(pk=cutover_id) if cutover_id else Cutover.objects.all()
        cutover = runbook.current() if cutover_id is None else None
        cutover = cutover or found.first()
        if cutover is None:
            raise CommandError(
                "there is no cutover yet" if cutover_id is None else f"no cutover {cutover_id}"
            )
        background.settle(cutover)  # a step the workers finished is recorded before it is shown
        return cutover

    def _start(self, user, *, name, target, monitor_minutes, **_) -> Cutover:
        return services.start(actor=user, name=name, target=target, monitor_minutes=monitor_minutes)

    def _confirm(self, user, *, step, note, revision, override, accept, **_) -> Cutover:
        cutover = _in_progress()
        services.confirm(
            cutover,
            step,
            actor=user,
            gateway=get_gateway(),
            trigger=RunTrigger.COMMAND,
            note=note,
            revision=revision,
            override=override,
            accept=accept,
        )
        cutover.refresh_from_db()
        return cutover

    def _abort(self, user, *, reason, unfreeze, flags_off, **_) -> Cutover:
        names = [name.strip() for name in flags_off.split(",") if name.strip()]
        return services.abort(
            _in_progress(),
            actor=user,
            reason=reason,
            gateway=get_gateway(),
            unfreeze=unfreeze,
            flags_off=names,
        )


def _actor(username: str | None):
    username = username or os.environ.get("REVASSURE_ACTOR")
    if not username:
        raise CommandError("say who is doing this: --actor USERNAME (or REVASSURE_ACTOR)")
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise CommandError(f"no active user {username!r}")
    return user


def _in_progress() -> Cutover:
    cutover = runbook.current()
    if cutover is None:
        raise CommandError("no cutover is in progress; start one with `cutover start`")
    return cutover


def _describe(cutover: Cutover) -> str:
    lines = [f"{cutover} ({cutover.get_status_display().lower()}), started by {cutover.started_by}"]
    for step in runbook.steps(cutover):
        who = (
            f" by {step.confirmed_by} at {step.confirmed_at:%Y-%m-%d %H:%M} UTC" if step.confirmed_by else ""
        )
        lines.append(f"  {step}: {step.get_state_display().lower()}{who}")
        progress = background.progress(step)
        if progress is not None:
            so_far = (
                f"{progress['done']:,} of {progress['total']:,}"
                if progress["total"]
                else f"{progress['done']:,}"
            )
            lines.append(
                f"    {progress['what']}: {progress['status'].lower()}, {so_far} {progress['unit']} done"
            )
    if cutover.abort_reason:
        lines.append(f"aborted by {cutover.aborted_by}: {cutover.abort_reason}")
        lines += [f"  rolled back: {done}" for done in cutover.rollback.get("done", [])]
        lines += [f"  by hand: {todo}" for todo in cutover.rollback.get("by_hand", [])]
    if cutover.checksum:
        lines.append(f"sealed, checksum {cutover.checksum}")
    return "\n".join(lines)


def _dumps(data) -> str:
    return json.dumps(data, sort_keys=True)
