"""The two forms of the exported alert rules (observability/rule_export.py): a
Prometheus rule file (YAML), and Cloud Monitoring alert policies (JSON) with a
PromQL condition each, for Managed Service for Prometheus."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from observability.rule_export import ExportedRule, Options

FORMATS = ("prometheus", "cloud-monitoring")


# -- durations ----------------------------------------------------------------------


def duration(seconds: float) -> str:
    """A Prometheus duration: 26h, 1h30m, 5m, 6s, 1s500ms, 0s."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def number(value: float) -> str:
    """Plain decimal, to the millisecond: 93600, 6.5 (never 1e+06)."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def seconds_literal(seconds: float) -> str:
    """A number of seconds as PromQL reads best: `26 * 3600`, `5 * 60`, `6.5`."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} * 3600"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} * 60"
    return number(seconds)


def proto_duration(seconds: float) -> str:
    """A google.protobuf.Duration in JSON: "300s", "0.5s"."""
    return f"{number(max(0.0, seconds))}s"


# -- the two formats --------------------------------------------------------------------


def _scalar(text: str) -> str:
    """A YAML scalar: single-quoted when it can be (readable PromQL), else JSON's
    double-quoted form, which YAML reads the same."""
    if text.isprintable() and text.isascii():
        return "'" + text.replace("'", "''") + "'"
    return json.dumps(text)


def prometheus_rule_file(rules: list[ExportedRule], options: Options, *, source: str) -> str:
    lines = [
        "# revassure's alert rules for Prometheus: `python manage.py export_alert_rules --format prometheus`",
        f"# {source}.",
    ]
    if options.time_scale != 1:
        lines.append(
            f"# Every duration scaled by {options.time_scale:g}: for tests and demos, not production."
        )
    lines += [
        "groups:",
        f"  - name: {_scalar(options.group)}",
        f"    interval: {duration(options.interval)}",
        "    rules:",
    ]
    for rule in rules:
        lines += [
            f"      - alert: {rule.alert}",
            f"        expr: {_scalar(rule.expr)}",
            f"        for: {duration(rule.hold)}",
            "        labels:",
            *(f"          {key}: {_scalar(value)}" for key, value in rule.labels.items()),
            "        annotations:",
            f"          summary: {_scalar(rule.title)}",
            f"          description: {_scalar(' '.join(filter(None, [rule.description, rule.now])))}",
        ]
    return "\n".join(lines) + "\n"


def cloud_monitoring_policies(rules: list[ExportedRule], options: Options) -> list[dict]:
    """One alert policy per rule (a policy with a PromQL condition has that one
    condition), as `gcloud alpha monitoring policies create --policy-from-file` reads it."""
    # Cloud Monitoring evaluates every 30 s or a multiple of it.
    evaluation = max(30, math.ceil(options.interval / 30) * 30)
    return [
        {
            "displayName": f"{options.group}/{rule.alert}",
            "documentation": {
                "subject": f"[revassure] {rule.title}"[:255],
                "content": f"{rule.description}\n\nPromQL: `{rule.expr}`",
                "mimeType": "text/markdown",
            },
            "userLabels": {"app": "revassure", **rule.labels},
            "conditions": [
                {
                    "displayName": rule.title,
                    "conditionPrometheusQueryLanguage": {
                        "query": rule.expr,
                        "duration": proto_duration(rule.hold),
                        "evaluationInterval": f"{evaluation}s",
                        "labels": rule.labels,
                        "ruleGroup": options.group,
                        "alertRule": rule.alert,
                    },
                }
            ],
            "combiner": "OR",
            "severity": rule.severity.upper(),
            "enabled": True,
        }
        for rule in rules
    ]
