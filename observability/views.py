"""GET /metrics: Prometheus text exposition, for a scraper holding METRICS_TOKEN."""

import hmac
import os

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from observability.collector import DatabaseCollector


def exposition() -> bytes:
    """Every process's counters (summed from PROMETHEUS_MULTIPROC_DIR when set,
    else this process's own) and the database gauges, read now."""
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector())
    directory = settings.PROMETHEUS_MULTIPROC_DIR or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        processes = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(processes, path=directory)
    else:
        processes = REGISTRY
    return generate_latest(processes) + generate_latest(database)


def _authorized(request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), settings.METRICS_TOKEN.encode()
    )


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.METRICS_TOKEN:
        raise Http404("metrics are off (METRICS_TOKEN is not set)")
    if not _authorized(request):
        refused = HttpResponse("a bearer token is required\n", status=401, content_type="text/plain")
        refused["WWW-Authenticate"] = 'Bearer realm="revassure-metrics"'
        return refused
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
