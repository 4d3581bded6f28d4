import json
import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from revassure import freeze
from revassure.firestore import get_gateway


class Command(BaseCommand):
    help = (
        "Freeze manual balance changes (heals and adjustments) for a cutover. The actor is "
        "--actor USERNAME, or REVASSURE_ACTOR from the environment; they need the ops role."
    )
    frozen = True

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reason", required=True)
        parser.add_argument("--actor", default=None, help="username recorded as who did it")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, reason: str, actor: str | None, json: bool = False, **options: Any) -> None:
        username = actor or os.environ.get("REVASSURE_ACTOR")
        if not username:
            raise CommandError("say who is doing this: --actor USERNAME (or REVASSURE_ACTOR)")
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {username!r}")
        change = freeze.freeze if self.frozen else freeze.unfreeze
        try:
            event = change(actor=user, reason=reason, gateway=get_gateway())
        except (ValueError, PermissionError) as exc:
            raise CommandError(str(exc)) from exc
        summary = {
            "frozen": event.frozen,
            "reason": event.reason,
            "actor": username,
            "at": event.created_at.isoformat(),
        }
        self.stdout.write(_dumps(summary) if json else str(event))


def _dumps(data) -> str:
    return json.dumps(data, sort_keys=True)
