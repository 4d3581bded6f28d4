"""django-q2 tasks of the snapshots app: thin wrappers around the services, which
enqueue them by dotted path (so no service imports this module)."""

import time

from django.conf import settings
from django_q.tasks import async_task

from revassure import leases
from revassure.firestore import get_gateway
from snapshots import services
from snapshots.models import Snapshot, SnapshotStatus


def take(snapshot_id: int) -> str:
    """Take a requested snapshot for at most half the worker timeout, then hand
    the rest to a next task: a snapshot of any size never meets the timeout
    that would kill its worker (its finished files are kept between tasks)."""
    deadline = time.monotonic() + settings.Q_CLUSTER["timeout"] / 2
    try:
        snapshot = services.run(snapshot_id, gateway=get_gateway(), deadline=deadline)
    except services.SnapshotBusy:  # delivered twice (the sweep's hand-out): another worker has it
        return Snapshot.objects.get(pk=snapshot_id).status
    if snapshot.status == SnapshotStatus.PENDING and snapshot.worker == leases.holder():
        async_task(services.TAKE_TASK, snapshot_id)
    return snapshot.status


def sweep() -> int:
    """Every minute: snapshots whose worker was lost go to a worker again."""
    return services.resume_abandoned()
