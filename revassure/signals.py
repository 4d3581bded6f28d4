"""django-q2's task signals carry the correlation id from enqueue to the worker.

Imported by RevassureConfig.ready(). It lives apart from revassure.logs, which
settings load (LOGGING) before any app is ready, because django_q.signals
imports django-q2's models.
"""

import contextvars
from typing import Any

from django.dispatch import receiver
from django_q.signals import post_execute_in_worker, pre_enqueue, pre_execute

from revassure import logs

_task_tokens: dict[str, contextvars.Token] = {}


@receiver(pre_enqueue, dispatch_uid="revassure-correlation-enqueue")
def attach_correlation_id(sender: object, task: dict[str, Any], **kwargs: Any) -> None:
    # A schedule enqueued by the cluster has no id bound: it starts a new one.
    task.setdefault(logs.TASK_KEY, logs.get_correlation_id() or logs.new_correlation_id())


@receiver(pre_execute, dispatch_uid="revassure-correlation-execute")
def bind_correlation_id(sender: object, func: object, task: dict[str, Any], **kwargs: Any) -> None:
    # Workers are reused and sync-mode tasks run in the caller's process: the
    # binding is reset after the task (below).
    _task_tokens[task["id"]] = logs.set_correlation_id(task.get(logs.TASK_KEY) or logs.new_correlation_id())


@receiver(post_execute_in_worker, dispatch_uid="revassure-correlation-reset")
def reset_correlation_id(sender: object, func: object, task: dict[str, Any], **kwargs: Any) -> None:
    token = _task_tokens.pop(task["id"], None)
    if token is not None:
        logs.reset_correlation_id(token)
