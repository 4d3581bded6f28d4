from django.apps import AppConfig

from revassure.sealing import chain as sealing


class CutoverConfig(AppConfig):
    name = "cutover"
    verbose_name = "Cutover"

    def ready(self):
        # A cutover in progress holds the freeze it relies on (revassure/freeze.py).
        # why: both import models, which are not loaded yet when apps.py is imported
        from cutover.services import freeze_hold
        from revassure import freeze

        freeze.register_hold(freeze_hold)

        # why: the report kind names the models, which load only once the
        # registry is ready; the kernel's chain (verify_reports) walks what
        # the apps register here.
        from cutover import record

        sealing.register(record.KIND)
