"""{% load revassure %}: the formatting of revassure.formatting as template filters."""

from django import template

from revassure import formatting

register = template.Library()

register.filter("points", formatting.points)
register.filter("signed", formatting.signed)
register.filter("when", formatting.when)
register.filter("label", formatting.label)
