from django.apps import AppConfig

from revassure.sealing import chain as sealing


class CutoverConfig(AppConfig):
    name = "cutover"
    verbose_name = "Cutover"

    def ready(self):
        # why: the report kind names the models, which load only once the
        # registry is ready; the kernel's chain (verify_reports) walks what
        # the apps register here.
        from cutover import record

        sealing.register(record.KIND)
