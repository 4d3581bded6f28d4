"""What an alert's notification says, for a person: the rule by the name people
read ("Break older than 7 days", not `break_older_than`), what is wrong, since
when, the rule's condition, and links into the product built on SITE_URL: the
alert's page, where to look (observability.targets), and the pages where a
signed-in person acknowledges or silences it. Those pages show a form on GET;
only their POST, from someone allowed, changes anything.

The email is plain text with an HTML alternative carrying the same words; the
webhook's JSON carries the subject as its text and the alert's link.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse

from observability import targets
from observability.models import Alert, NotificationKind
from revassure.formatting import duration, points, when

HTML_TEMPLATE = "observability/alert_email.html"
SUBJECT_SUMMARY_CHARS = 140


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class Mail:
    subject: str
    text: str
    html: str


def absolute(path: str) -> str:
    """A path of the product as a link people follow from an email."""
    return settings.SITE_URL.rstrip("/") + path


def alert_url(alert: Alert) -> str:
    return absolute(reverse("admin:observability_alert_change", args=[alert.pk]))


def subject(alert: Alert, kind: str) -> str:
    words: dict[str, str] = {NotificationKind.FIRING: "Alert", NotificationKind.REPEAT: "Still open"}
    word = words.get(kind, "Resolved")
    summary = alert.summary
    if len(summary) > SUBJECT_SUMMARY_CHARS:
        summary = summary[: SUBJECT_SUMMARY_CHARS - 1].rstrip() + "…"
    return f"[revassure] {word}: {alert.rule.title}: {summary}"


def condition(alert: Alert) -> str:
    """The rule's description with its number in place of N."""
    text = alert.rule.description
    return text.replace(" N ", f" {points(alert.rule.threshold)} ") if " N " in text else text


def status_line(alert: Alert, kind: str) -> str:
    opened = alert.opened_at or alert.started_at
    if kind == NotificationKind.RESOLVED:
        ended = alert.resolved_at or opened
        return f"Resolved at {when(ended)}, after {duration(ended - opened)}."
    if kind == NotificationKind.REPEAT:
        return f"Still open since {when(opened)}: nobody has acknowledged it yet."
    return f"Open since {when(opened)}."


def links(alert: Alert, kind: str) -> dict:
    """The links an alert's notification carries (acknowledge and silence only while it is open)."""
    found = targets.where_to_look(alert)
    pk = alert.pk
    actions = []
    if kind != NotificationKind.RESOLVED:
        actions = [
            Link(
                "Acknowledge (stops the repeats)",
                absolute(reverse("admin:observability_alert_acknowledge", args=[pk])),
            ),
            Link("Silence for a while", absolute(reverse("admin:observability_alert_silence", args=[pk]))),
        ]
    return {
        "alert": Link(f"Alert {pk}", alert_url(alert)),
        "where": Link(found[0], absolute(found[1])) if found else None,
        "actions": actions,
    }


def compose(alert: Alert, kind: str) -> Mail:
    found = links(alert, kind)
    context = {
        "title": alert.rule.title,
        "status": status_line(alert, kind),
        "summary": alert.summary,
        "condition": condition(alert),
        "resolved": kind == NotificationKind.RESOLVED,
        **found,
    }
    lines = [
        f"{alert.rule.title}",
        context["status"],
        "",
        f"{alert.summary[:1].upper()}{alert.summary[1:].rstrip('.')}.",
        "",
        f"The rule: {context['condition']}",
        "",
    ]
    if found["where"]:
        lines += [f"Where to look: {found['where'].label}", f"  {found['where'].url}", ""]
    lines += [f"The alert: {found['alert'].url}"]
    for action in found["actions"]:
        lines += [f"{action.label}: {action.url}"]
    if found["actions"]:
        lines += ["(Each opens a page of the product where you confirm, with a reason, once signed in.)"]
    lines += ["", "-- ", "revassure, to the addresses in ALERT_EMAILS."]
    return Mail(subject(alert, kind), "\n".join(lines) + "\n", render_to_string(HTML_TEMPLATE, context))
