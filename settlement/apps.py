from django.apps import AppConfig

from revassure.sealing import chain as sealing


class SettlementConfig(AppConfig):
    name = "settlement"
    verbose_name = "Settlement"

    def ready(self):
        # why: the report kind names the models, which load only once the
        # registry is ready; the kernel's chain (verify_reports) walks what
        # the apps register here.
        from settlement import reports

        sealing.register(reports.KIND)
