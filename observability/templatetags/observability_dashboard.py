from django import template
from django.template import Context

from observability import dashboard

register = template.Library()


@register.inclusion_tag("admin/observability/dashboard.html", takes_context=True)
def revenue_dashboard(context: Context) -> dict:
    """The dashboard tiles on the admin index, for what this person may see."""
    return dashboard.tiles(context["request"].user)
