"""{% load observability_inbox %}: the "Waiting for you" count in the header of
every admin page (templates/admin/base_site.html), for someone with a role."""

from django import template
from django.template import Context

from observability import inbox

register = template.Library()


@register.inclusion_tag("admin/observability/inbox_link.html", takes_context=True)
def inbox_link(context: Context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not inbox.may_use(user):
        return {"shown": False}
    return {"shown": True, "count": inbox.count(user)}
