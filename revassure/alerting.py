"""Ask for an alert evaluation right after a change that may open or resolve one
(a run ended, a migration ended, the freeze changed), besides the every-minute
schedule. By dotted path: the core never imports the observability app."""

from django.utils.module_loading import import_string
from django_q.tasks import async_task

from revassure.logs import on_commit

EVALUATE_TASK = "observability.tasks.evaluate_alerts"


def evaluate_soon() -> None:
    on_commit(lambda: async_task(EVALUATE_TASK, task_name="evaluate-alerts"))


def evaluate_now() -> None:
    """Evaluate the rules in this process, now (the real-time watcher: a drift
    it records must not wait for a worker or the next minute)."""
    import_string(EVALUATE_TASK)()
