"""Refusals people read: every 403 outside the machine APIs is an admin page
that says why and where to go (templates/403.html; a failed CSRF check gets
templates/403_csrf.html from Django's own view); the APIs answer JSON."""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults

# Machines call these (job API, provider webhooks): they get JSON, never a page.
API_PREFIX = "/api/"


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler403: PermissionDenied raised anywhere, admin views included."""
    reason = str(exception or "").strip()
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"error": reason or "forbidden"}, status=403)
    return refusal(request, reason=reason)


def refusal(request: HttpRequest, *, reason: str = "", advice: str = "", status: int = 403) -> HttpResponse:
    """The refusal page (extends admin/base_site.html)."""
    context = {
        **admin.site.each_context(request),
        "title": "Access refused",
        "reason": reason,
        "advice": advice,
    }
    return render(request, "403.html", context, status=status)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: our page with a way back; the APIs answer JSON."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"error": "not found"}, status=404)
    context = {**admin.site.each_context(request), "title": "Not found"}
    return render(request, "404.html", context, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: templates/500.html (rendered without context: the error may be
    in the context itself); the APIs answer JSON."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse({"error": "server error"}, status=500)
    return defaults.server_error(request)
