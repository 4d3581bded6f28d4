"""HTTP endpoints of the core for machines: health probes and the OpenAPI document.

The job API lives in `jobs`, the payment provider's webhook in `backfill`; the
document here describes them all, as revassure/urls.py wires them all. None of
these views imports an app. None uses cookies, so all are CSRF-exempt, and a
wrong method gets a 405 rather than a 403.
"""

from pathlib import Path

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from revassure.firestore import get_gateway

_OPENAPI = Path(__file__).with_name("openapi.json").read_text()


@csrf_exempt
@require_GET
def openapi(request: HttpRequest) -> HttpResponse:
    """The OpenAPI document of the machine endpoints; tests check the running app against it."""
    return HttpResponse(_OPENAPI, content_type="application/json")


@csrf_exempt
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


@csrf_exempt
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    """Ready when the database answers with every migration applied and Firestore answers."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        checks["database"] = "ok" if not pending else f"{len(pending)} migrations not applied"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        get_gateway().ping()
        checks["firestore"] = "ok"
    except Exception as exc:
        checks["firestore"] = f"unreachable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"ready": ready, **checks}, status=200 if ready else 503)
