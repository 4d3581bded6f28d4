"""How a break is drawn on its admin page: the probable cause's evidence as
tables, and the delta at each sighting as a small SVG chart drawn on the
server (no script, no style attribute: presentation attributes only, which
the CSP allows)."""

from __future__ import annotations

from datetime import datetime

from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from reconciliation.models import Break
from revassure.formatting import EMPTY, label, points, signed, when


def evidence_table(evidence: dict) -> SafeString | str:
    if not evidence:
        return EMPTY
    facts = [
        (label(key), _fact(key, value))
        for key, value in evidence.items()
        if key not in ("entries", "last_rebalance", "corrections")
    ]
    entries = evidence.get("entries", [])
    rebalance = evidence.get("last_rebalance")
    if rebalance:
        applied = when(datetime.fromisoformat(rebalance["applied_at"]))
        facts.append(("Last rebalance", f"request {rebalance['request']} at {applied}"))
    for c in evidence.get("corrections", []):
        held = "no amount" if c["amount"] is None else repr(c["amount"])
        superseded = f"{c['entry']} ({held}) superseded by {c['corrected_by']} ({signed(c['by_amount'])})"
        facts.append(("Corrected entry", superseded))
    table = format_html_join("", '<tr><th scope="row">{}</th><td>{}</td></tr>', facts)
    rows = format_html_join(
        "",
        '<tr><td>{}</td><td class="numeric">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
        (
            (
                e["id"],
                signed(e["amount"]) if type(e["amount"]) is int else repr(e["amount"]),
                when(datetime.fromisoformat(e["created_at"])) if e.get("created_at") else EMPTY,
                e.get("type") or EMPTY,
                e.get("written_by") or EMPTY,
            )
            for e in entries
        ),
    )
    listed = (
        format_html(
            '<table class="ra-items" id="cause-entries"><thead><tr><th>entry</th>'
            '<th class="numeric">amount</th><th>created</th><th>type</th><th>written by</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            rows,
        )
        if entries
        else ""
    )
    return format_html('<table class="ra-facts" id="cause-evidence">{}</table>{}', table, listed)


def _fact(key: str, value) -> str:
    if key == "read_at":
        return when(datetime.fromisoformat(value))
    if key == "delta":
        return signed(value)
    if key == "wallet":
        return value
    return points(value)  # a malformed value shows as it is


def summary(brk: Break | None) -> dict | None:
    """A break as another page shows it beside a decision (the decide page): a link,
    its facts, its probable cause and the evidence for it."""
    if brk is None:
        return None
    owner = f", {brk.owner}'s" if brk.owner_id else ", nobody's"
    days = (brk.last_seen - brk.first_seen).days
    return {
        "url": reverse("admin:reconciliation_break_change", args=[brk.pk]),
        "title": f"Break {brk.pk} of {brk.uid}",
        "facts": [
            ("status", f"{brk.get_status_display()}{owner if brk.is_open else ''}"),
            ("delta (wallet − ledger)", signed(brk.delta)),
            (
                "seen",
                (
                    f"once, {when(brk.first_seen)}"
                    if brk.sightings_count == 1
                    else f"{points(brk.sightings_count)} times, from {when(brk.first_seen)} "
                    f"to {when(brk.last_seen)} ({days} day{'' if days == 1 else 's'})"
                ),
            ),
            ("probable cause", brk.get_cause_display() if brk.cause else "not computed yet"),
            ("what the ledger says", brk.cause_text or EMPTY),
        ],
        "evidence": evidence_table(brk.cause_evidence),
    }


CHART_W, CHART_H, PAD = 640, 180, 36


def delta_chart(series: list[tuple[datetime, int | None]]) -> SafeString:
    """The delta at each sighting as a small SVG line chart, drawn here (no
    script, no style attribute: presentation attributes only, which the CSP
    allows). Sightings without a delta (malformed points) are left out."""
    known = [(t, d) for t, d in series if d is not None]
    if not known:
        return mark_safe('<p class="ra-muted">No delta to draw: the wallet\'s points are malformed.</p>')
    low, high = min(0, *(d for _, d in known)), max(0, *(d for _, d in known))
    span = (high - low) or 1
    start, end = known[0][0], known[-1][0]
    seconds = (end - start).total_seconds() or 1

    def x(t):
        return PAD + (CHART_W - 2 * PAD) * ((t - start).total_seconds() / seconds if len(known) > 1 else 0.5)

    def y(d):
        return PAD / 2 + (CHART_H - PAD) * (high - d) / span

    line = " ".join(f"{x(t):.1f},{y(d):.1f}" for t, d in known)
    dots = format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="4" fill="currentColor"><title>{}: {}</title></circle>',
        ((f"{x(t):.1f}", f"{y(d):.1f}", when(t), signed(d)) for t, d in known),
    )
    zero = y(0)
    return format_html(
        '<svg id="break-chart" class="ra-chart" viewBox="0 0 {w} {h}" width="100%" height="{h}" role="img" '
        'aria-label="Delta at each of {n} sightings, from {first} to {last}">'
        '<line x1="{pad}" y1="{zero}" x2="{right}" y2="{zero}" stroke="#999" stroke-dasharray="4 3"/>'
        '<text x="2" y="{zero_text}" font-size="11" fill="#666">0</text>'
        '<text x="2" y="{top}" font-size="11" fill="#666">{high}</text>'
        '<text x="2" y="{bottom}" font-size="11" fill="#666">{low}</text>'
        '<polyline points="{line}" fill="none" stroke="currentColor" stroke-width="2"/>{dots}'
        '<text x="{pad}" y="{h_text}" font-size="11" fill="#666">{start}</text>'
        '<text x="{right}" y="{h_text}" font-size="11" fill="#666" text-anchor="end">{end}</text>'
        "</svg>",
        w=CHART_W,
        h=CHART_H,
        n=len(known),
        first=signed(known[0][1]),
        last=signed(known[-1][1]),
        pad=PAD,
        right=CHART_W - PAD,
        zero=f"{zero:.1f}",
        zero_text=f"{zero + 4:.1f}",
        top=f"{y(high) + 4:.1f}",
        bottom=f"{y(low) + 4:.1f}",
        high=signed(high),
        low=signed(low),
        line=line,
        dots=dots,
        h_text=CHART_H - 4,
        start=when(start),
        end=when(end),
    )
