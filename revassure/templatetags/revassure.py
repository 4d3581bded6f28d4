"""{% load revassure %}: the formatting of revassure.formatting as template
filters, one per kind of value: {{ n|points }}, {{ d|signed }},
{{ amount|money:currency }}, {{ t|when }}, {{ delta|duration }},
{{ bytes|size }}, {{ code|label }}, {{ value|shown }}."""

from django import template

from revassure import formatting

register = template.Library()

register.filter("points", formatting.points)
register.filter("signed", formatting.signed)
register.filter("money", formatting.money)
register.filter("when", formatting.when)
register.filter("duration", formatting.duration)
register.filter("size", formatting.size)
register.filter("shown", formatting.shown)
register.filter("label", formatting.label)
