"""Refusals people read: every 403 outside the machine APIs is an admin page
that says why and where to go (templates/403.html; a failed CSRF check gets
templates/403_csrf.html from Django's own view); the APIs answer JSON."""

from django.contrib import admin
from django.http import JsonResponse
from django.shortcuts import render

# Machines call these (job API, provider webhooks): they get JSON, never a page.
API_PREFIX = "/api/"


def permission_denied(request, exception=None):
    """handler403: PermissionDenied raised anywhere, admin views included."""
    reason = str(exception or "").strip()
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"error": reason or "forbidden"}, status=403)
    return refusal(request, reason=reason)


def refusal(request, *, reason: str = "", advice: str = "", status: int = 403):
    """The refusal page (extends admin/base_site.html)."""
    context = {
        **admin.site.each_context(request),
        "title": "Access refused",
        "reason": reason,
        "advice": advice,
    }
    return render(request, "403.html", context, status=status)
