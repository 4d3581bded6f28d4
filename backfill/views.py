"""The payment provider's webhook: signed events in, stored raw, applied by a worker.

The provider authenticates with a signature over the raw body, never a cookie,
so the view is CSRF-exempt; a wrong method gets a 405.
"""

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from backfill import events, intake
from revassure import metrics

log = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def paynow_webhook(request: HttpRequest) -> HttpResponse:
    """Signed provider events: 401 for a bad or stale signature (nothing stored);
    a well-signed delivery is stored raw first, then 202 when it can be applied
    (it is, by a worker) or 422 with the reason it is quarantined; 503 with
    Retry-After when it cannot be stored now (the database locked or away)."""
    body = request.body
    try:
        events.verify_signature(
            request.headers.get("PayNow-Signature", ""), body, settings.PAYNOW_WEBHOOK_SECRETS
        )
    except events.BadSignature as exc:
        log.warning("webhook refused: %s", exc)
        intake.record_rejection(body, reason=str(exc), remote_addr=request.META.get("REMOTE_ADDR"))
        metrics.webhook_delivery("rejected")
        refused = JsonResponse({"error": str(exc)}, status=401)
        # The answer is byte for byte what it was when this view shared the job
        # API's helper (a 401 must name a scheme); providers key on the status.
        refused["WWW-Authenticate"] = 'Bearer realm="revassure-jobs"'
        return refused
    try:
        delivery = intake.receive_webhook(body)
    except intake.IntakeUnavailable:
        # Nothing was stored: the provider sends it again after Retry-After.
        busy = JsonResponse({"error": "the delivery could not be stored now; send it again"}, status=503)
        busy["Retry-After"] = str(settings.WEBHOOK_RETRY_AFTER_SECONDS)
        return busy
    status = 202 if delivery.status == "received" else 422
    answer = {"delivery_id": delivery.pk, "event_id": delivery.event_id, "status": delivery.status}
    if delivery.reason:
        answer["reason"] = delivery.reason
    return JsonResponse(answer, status=status)
