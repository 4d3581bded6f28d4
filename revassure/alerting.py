"""Ask for an alert evaluation right after a change that may open or resolve one
(a run ended, a migration ended, the freeze changed), besides the every-minute
schedule. By dotted path: the core never imports the observability app."""

from django_q.tasks import async_task

from revassure.logs import on_commit

EVALUATE_TASK = "observability.tasks.evaluate_alerts"


def evaluate_soon() -> None:
    on_commit(lambda: async_task(EVALUATE_TASK, task_name="evaluate-alerts"))
