"""django-q2 tasks of the snapshots app: thin wrappers around the services, which
enqueue them by dotted path (so no service imports this module)."""

import time

from django.conf import settings
from django_q.tasks import async_task

from revassure.firestore import get_gateway
from snapshots import services
from snapshots.models import SnapshotStatus


def take(snapshot_id: int) -> str:
    """Take a requested snapshot for at most half the worker timeout, then hand
    the rest to a next task: a snapshot of any size never meets the timeout
    that would kill its worker (its finished files are kept between tasks)."""
    deadline = time.monotonic() + settings.Q_CLUSTER["timeout"] / 2
    snapshot = services.run(snapshot_id, gateway=get_gateway(), deadline=deadline)
    if snapshot.status == SnapshotStatus.PENDING:
        async_task(services.TAKE_TASK, snapshot_id)
    return snapshot.status
