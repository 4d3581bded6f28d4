"""What every ModelAdmin of ours shares: a list that refuses a bad filter in its
address with a message instead of failing, and the view-only base for records."""

import re

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import models
from django.http import HttpRequest

# The largest row id a database here stores (BigAutoField: SQLite's and
# PostgreSQL's signed 64-bit integer); a larger number names no row.
MAX_ROW_ID = 2**63 - 1


def row_id(value: str | None) -> int | None:
    """A list filter's value read as a row id, or None when it cannot be one:
    ASCII digits only (not "²", which str.isdigit() accepts and int() refuses),
    from 1 up to the largest id a table holds."""
    if not value or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if 1 <= number <= MAX_ROW_ID else None


def require_row_id(value: str, what: str) -> int:
    """`row_id`, or the refusal a list shows for a filter that names no row."""
    number = row_id(value)
    if number is None:
        raise IncorrectLookupParameters(f"{value!r} is not a {what} number")
    return number


# Django's words for a value a field cannot take name its internals ("Field 'id'
# expected a number but got 'abc'."): people read what was expected and what came.
DJANGO_FIELD_ERROR = re.compile(r"Field '[^']*' expected (?P<expected>.+?) but got (?P<got>.+?)\.?$")


def readable(detail: str) -> str:
    """A filter's refusal in people's words."""
    found = DJANGO_FIELD_ERROR.match(detail)
    return f"expected {found['expected']}, got {found['got']}" if found else detail


class AuthenticatedHttpRequest(HttpRequest):
    """The request of a page wrapped in `admin_site.admin_view`, which lets only a
    signed-in staff user through: its user is a User, never AnonymousUser (the
    django-stubs way to say so to the type checker; nothing checks it at run time)."""

    user: User


class BaseAdmin(admin.ModelAdmin):
    """A list asked for with a filter value it cannot use (letters where an id
    goes, "²", a number past the largest id) is shown without its filters and
    says why, as Django does for its own filters, instead of a server error.

    Django turns IncorrectLookupParameters into a redirect to the bare list
    (`?e=1`); our filters' values reach the database through plain
    `queryset.filter()` calls, whose ValueError, ValidationError or
    OverflowError (SQLite's bound on integers, raised when the list is counted)
    are the same mistake and are refused the same way. A NUL anywhere in the
    address is refused before any query.
    """

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        try:
            if any("\x00" in value for _, values in request.GET.lists() for value in values):
                # PostgreSQL refuses a NUL in text, mid-query.
                raise IncorrectLookupParameters("a value holds a NUL character")
            return super().get_changelist_instance(request)
        except (IncorrectLookupParameters, ValidationError, ValueError, OverflowError) as exc:
            detail = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            self.message_user(
                request,
                "The filters in the address could not be used"
                + (f" ({readable(detail)})" if detail else "")
                + ": the list is shown without them.",
                messages.ERROR,
            )
            raise IncorrectLookupParameters(detail) from exc


class ReadOnlyAdmin(BaseAdmin):
    """Records that must not change (reports, audit trails, histories):
    viewable, never added, edited or deleted through the admin."""

    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False
