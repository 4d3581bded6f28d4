"""{% load revassure_admin %}: what the admin's own templates (the header, the
index, change lists) need beyond Django's tags."""

from collections.abc import Iterable
from typing import Any

from django import template
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.models import AnonymousUser, User
from django.middleware.csrf import get_token
from django.template import Context
from django.utils.html import escape, strip_tags
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst

from revassure import freeze
from revassure.refusals import may
from revassure.roles import ROLES

register = template.Library()


@register.simple_tag
def labelled_cells(result: Iterable[object], headers: Iterable[dict[str, Any]]) -> SafeString:
    """A change list row's cells, each with data-label="<its column header>", so
    that on a phone, where rows stack into cards, every value says what it is
    (admin.css shows the label with ::before). Cells are Django's own HTML."""
    labels = [capfirst(strip_tags(str(header.get("text", ""))).strip()) for header in headers]
    cells = []
    for n, cell in enumerate(result):
        label = labels[n] if n < len(labels) else ""
        html = str(cell)
        if label and html.startswith(("<td", "<th")):
            html = f'{html[:3]} data-label="{escape(label)}"{html[3:]}'
        cells.append(html)
    # Django rendered and escaped the cells; the label is escaped above.
    return mark_safe("".join(cells))


@register.simple_tag
def active_filters(cl: ChangeList) -> list[str]:
    """Each filter of a change list that is in use, as "title: choice" (a
    filter's first choice is always the unfiltered "All")."""
    active = []
    for spec in cl.filter_specs:
        if not spec.has_output():
            continue
        for n, choice in enumerate(spec.choices(cl)):
            if n and choice.get("selected"):
                active.append(f"{capfirst(spec.title)}: {choice['display']}")
    return active


@register.filter
def roles(user: User | AnonymousUser) -> list[str]:
    """The revassure roles a user holds, by name (finance-reviewer, ...)."""
    if not getattr(user, "is_authenticated", False):
        return []
    held = set(user.groups.values_list("name", flat=True))
    return [role for role in ROLES if role in held]


@register.inclusion_tag("admin/revassure/freeze_panel.html", takes_context=True)
def freeze_panel(context: Context) -> dict:
    """The freeze on the admin index: its state, who set it, when and why, and
    for ops the form that asks for the other state (with a reason)."""
    request = context["request"]
    user = request.user
    can_manage = may(user, "revassure.manage_freeze")
    latest = freeze.latest()
    frozen = latest is not None and latest.frozen
    # A procedure holding the freeze (a cutover) lifts it itself: said here, no button to be refused.
    held = freeze.hold(latest) if frozen else None
    return {
        "visible": can_manage or may(user, "revassure.view_freezeevent"),
        "can_manage": can_manage and held is None,
        "held": held[1] if held else "",
        "latest": latest,
        "frozen": frozen,
        "asks_for": "unfreeze" if frozen else "freeze",
        "csrf_token": get_token(request),
    }
