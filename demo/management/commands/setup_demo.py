import json
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser

from revassure.roles import APPROVER, OPS, REVIEWER

DEMO_USERS = [
    ("admin", None, True),
    ("reviewer", REVIEWER, False),
    ("approver", APPROVER, False),
    ("ops", OPS, False),
]


class Command(BaseCommand):
    help = (
        "Create (or reset) the demo logins: a superuser and one user per role, each with a fresh "
        "random password, printed once. For local demos only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, json: bool = False, **options: Any) -> None:
        User = get_user_model()
        logins = []
        for username, role, superuser in DEMO_USERS:
            user, _ = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@demo.invalid"}
            )
            password = secrets.token_urlsafe(9)
            user.set_password(password)
            user.is_staff = True
            user.is_superuser = superuser
            user.save()
            user.groups.set([Group.objects.get(name=role)] if role else [])
            logins.append({"username": username, "password": password, "role": role or "superuser"})
        if json:
            self.stdout.write(_dumps(logins))
            return
        for login in logins:
            self.stdout.write(f"  {login['role']:<17} {login['username']:<10} {login['password']}")


def _dumps(data) -> str:
    return json.dumps(data)
