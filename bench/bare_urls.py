"""The product's URLs and the bench's bare view (see bench/bare_settings.py)."""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from revassure.urls import urlpatterns as product


@csrf_exempt
def bare(request):
    return HttpResponse(b"ok\n", content_type="text/plain")


urlpatterns = [path("bench/bare", bare), *product]
