"""django-q2 tasks of the settlement app: thin wrappers the services enqueue by dotted path."""

from revassure.firestore import get_gateway
from settlement import services


def run_import(run_id: int) -> str:
    return services.run_pending(run_id, gateway=get_gateway()).status


def sweep() -> dict[str, int]:
    """Every minute: settlement runs whose worker (or task) was lost go to a worker again."""
    return services.resume_abandoned()
