from django.apps import AppConfig


class RevassureConfig(AppConfig):
    name = "revassure"
    verbose_name = "Operations"

    def ready(self):
        # why: Django's documented place to register system checks and signal
        # receivers; `signals` imports django-q2's models, which cannot load
        # before the app registry is ready.
        from revassure import checks, signals  # noqa: F401
