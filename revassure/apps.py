from django.apps import AppConfig


class RevassureConfig(AppConfig):
    name = "revassure"
    verbose_name = "Operations"

    def ready(self):
        from revassure import checks  # noqa: F401  (registers the system checks)
        from revassure.logs import connect_task_signals

        connect_task_signals()
