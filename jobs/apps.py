from django.apps import AppConfig


class JobsConfig(AppConfig):
    """The job API: the top layer that starts the apps' work for machines."""

    name = "jobs"
    verbose_name = "Jobs"
