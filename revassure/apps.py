from typing import ClassVar

from django.apps import AppConfig
from django.db.models.signals import post_migrate

from revassure.roles import APPROVER, OPS, REVIEWER


class RevassureConfig(AppConfig):
    name = "revassure"
    verbose_name = "Operations"
    # What each role may do here (revassure.grants syncs it after migrate).
    grants: ClassVar[dict[str, list[str]]] = {
        REVIEWER: ["view_freezeevent"],
        APPROVER: ["view_freezeevent"],
        OPS: [
            "view_featureflag",
            "change_featureflag",
            "view_featureflagchange",
            "manage_freeze",
            "view_freezeevent",
        ],
    }

    def ready(self) -> None:
        # why: Django's documented place to register system checks and signal
        # receivers; `signals` imports django-q2's models, which cannot load
        # before the app registry is ready.
        from revassure import checks, grants, schedules, signals  # noqa: F401

        post_migrate.connect(grants.after_migrate, dispatch_uid="revassure-role-grants")
        post_migrate.connect(schedules.after_migrate, dispatch_uid="revassure-schedules")
