"""Every admin list fed bad input, as a superuser would type it into the
address: the list without the bad filter and a message saying so, never a
server error."""

import io
import itertools
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django import forms
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django_q.models import Schedule

from cutover.models import Cutover
from observability import alerts
from observability.models import Alert, AlertRule, AlertState
from reconciliation import services as reconciliation
from reconciliation.models import Break, RunTrigger
from tests.helpers import put_wallets, stored_event

# Letters, a superscript digit (str.isdigit() says yes, int() says no) and a
# number past any id, as the issue that found the 500s lists them; the search
# box, where letters are what people type, gets a NUL after them instead, which
# PostgreSQL refuses in text.
BAD = ["abc", "²", "9" * 25]
BAD_SEARCH = ["²", "9" * 25, "abc\x00"]
SAID = "The filters in the address could not be used"


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", "password")


@pytest.fixture
def world(gateway):
    put_wallets(gateway, {"u1": (12, [10]), "u2": (3, [3]), "u3": (5, [2, 2.5]), "u4": (5, [2, "3"])})
    reconciliation.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)
    stored_event("evt_1", points=7)
    return gateway


def registered():
    """Each model in the admin with its ModelAdmin (Django's public API)."""
    return [
        (model, admin.site.get_model_admin(model))
        for model in apps.get_models()
        if admin.site.is_registered(model)
    ]


def filter_parameters(model, model_admin, superuser) -> set[str]:
    """The query parameters the list's filters read (none for a page over
    Firestore, whose model has no table)."""
    if not model._meta.managed:
        return set()
    request = RequestFactory().get("/")
    request.user = superuser
    changelist = model_admin.get_changelist_instance(request)
    names = set()
    for spec in changelist.filter_specs:
        names.update(spec.expected_parameters())
    return names


def list_pages(model_admin) -> list[str]:
    """The list and the pages that read its filters (the CSV exports)."""
    return [
        reverse(f"admin:{p.name}")
        for p in model_admin.urls
        if p.name and "<" not in str(p.pattern) and p.name.endswith(("_changelist", "_export"))
    ]


@pytest.mark.django_db
def test_every_admin_list_filter_and_search_box_survives_bad_values(superuser, world):
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    failures = []
    walked = 0
    for model, model_admin in registered():
        parameters = filter_parameters(model, model_admin, superuser) | {"p", "o", "q"}
        for url in list_pages(model_admin):
            for name in sorted(parameters):
                for value in BAD_SEARCH if name == "q" else BAD:
                    response = client.get(url, {name: value})
                    walked += 1
                    if response.status_code >= 500:
                        failures.append(f"{url}?{name}={value[:30]}: {response.exc_info[1]!r}")
    assert not failures, "\n".join(failures)
    assert walked > 300  # the walk reached the lists, not just one page


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/admin/reconciliation/violation/?run__id__exact=abc",
        "/admin/reconciliation/violation/?run=abc",
        "/admin/reconciliation/reconciliationrun/?started_at__year=abc",
        "/admin/reconciliation/violation/?run__id__exact=²",
        "/admin/reconciliation/violation/?run__id__exact=99999999999999999999999",
        "/admin/reconciliation/violation/export.csv?run__id__exact=²",
        "/admin/settlement/settlementrow/?run=²",
        "/admin/settlement/settlementrow/?run=99999999999999999999999",
        "/admin/reconciliation/break/?owner=²",
        "/admin/reconciliation/break/?owner=99999999999999999999999",
    ],
)
def test_a_bad_filter_value_shows_the_whole_list_and_says_why(client, superuser, world, url):
    client.force_login(superuser)
    response = client.get(url, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0].endswith("?e=1")
    page = response.content.decode()
    assert SAID in page and "the list is shown without them" in page
    assert "Field &#x27;" not in page and "Field '" not in page  # no Django internals


# -- every number typed into a form of ours ----------------------------------------------

NUMBERS = ["9" * 25, "-" + "9" * 25, "99999999999", "10000000000", "-1", "0", "²", "1e400", "abc"]
ROOT = Path(__file__).resolve().parents[2]


def our_numeric_fields() -> set[str]:
    """'module.Form.field' for every number field of every form defined in this
    project (admin pages, actions, custom pages), found by walking the form
    classes Django has loaded with the admin."""

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    ours = {config.name for config in apps.get_app_configs() if Path(config.path).is_relative_to(ROOT)}
    found = set()
    for form in subclasses(forms.BaseForm):
        if form.__module__.split(".")[0] not in ours:
            continue
        for name, field in form.base_fields.items():
            if isinstance(field, forms.IntegerField) or isinstance(field.widget, forms.NumberInput):
                found.add(f"{form.__module__}.{form.__name__}.{name}")
    return found


def number_fields_of_admin_forms_not_ours(superuser) -> set[str]:
    """'app.Model.field' for each number a superuser may type into an admin
    add or change form that is not one of ours (another package's admin):
    such a form has no walk here until the admin is given a form of ours."""
    ours = {config.name for config in apps.get_app_configs() if Path(config.path).is_relative_to(ROOT)}
    request = RequestFactory().get("/")
    request.user = superuser
    found = set()
    for model, model_admin in registered():
        editable = model_admin.has_add_permission(request) or model_admin.has_change_permission(request)
        if not editable or model_admin.form.__module__.split(".")[0] in ours:
            continue
        read_only = set(model_admin.get_readonly_fields(request, model()))
        for field in model._meta.fields:
            if field.editable and field.name not in read_only:
                if isinstance(field.formfield(), forms.IntegerField):  # FloatField and DecimalField too
                    found.add(f"{model._meta.label}.{field.name}")
    return found


def hidden_inputs(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def post_rule(client, field):
    rule = AlertRule.objects.get(name="reconciliation_stale")
    url = reverse("admin:observability_alertrule_change", args=[rule.pk])
    page = client.get(url).content.decode()
    values = {"enabled": "on", "threshold": "26", "for_minutes": "0", "repeat_minutes": "240", "reason": "r"}
    return lambda value: client.post(url, {**hidden_inputs(page), **values, field: value})


def post_schedule(client, field):
    names = itertools.count()
    now = timezone.now()
    values = {
        "func": "math.floor",
        "args": "1",
        "schedule_type": Schedule.MINUTES,
        "minutes": "5",
        "repeats": "-1",
        "next_run_0": f"{now:%Y-%m-%d}",
        "next_run_1": f"{now:%H:%M:%S}",
    }
    url = reverse("admin:django_q_schedule_add")
    return lambda value: client.post(url, {**values, "name": f"typed-{next(names)}", field: value})


def posts(client) -> dict:
    """How each number field is sent, as a person sends it: value -> response."""
    alert = Alert.objects.create(
        rule=AlertRule.objects.get(name="violations_found"),
        state=AlertState.OPEN,
        summary="3 violations",
        started_at=timezone.now(),
        opened_at=timezone.now(),
        last_notified_at=timezone.now(),
    )
    return {
        "cutover.forms.StartForm.monitor_minutes": lambda value: client.post(
            reverse("admin:cutover_start"),
            {"name": "go-live", "target": "production", "monitor_minutes": value},
        ),
        "observability.admin.AlertActionForm.hours": lambda value: client.post(
            reverse("admin:observability_alert_changelist"),
            {"action": "silence", "_selected_action": [alert.pk], "reason": "noisy", "hours": value},
        ),
        "observability.admin.SilenceForm.hours": lambda value: client.post(
            reverse("admin:observability_alert_silence", args=[alert.pk]), {"hours": value, "reason": "noisy"}
        ),
        "reconciliation.break_forms.BreakCorrectionForm.amount": lambda value: client.post(
            reverse("admin:reconciliation_break_propose_correction", args=[Break.objects.get(uid="u4").pk]),
            {"entry_id": "e001", "amount": value, "reason": "typo"},
        ),
        "reconciliation.admin_change_pages.AdjustmentForm.amount": lambda value: client.post(
            reverse("admin:reconciliation_balancerequest_propose"),
            {"uid": "u1", "amount": value, "reason_code": "correction", "reason": "typo"},
        ),
        "revassure.admin.ScheduleForm.minutes": post_schedule(client, "minutes"),
        "revassure.admin.ScheduleForm.repeats": post_schedule(client, "repeats"),
        **{
            f"observability.admin.RuleForm.{field}": post_rule(client, field)
            for field in ("threshold", "second_threshold", "for_minutes", "repeat_minutes")
        },
    }


@pytest.mark.django_db
def test_every_number_field_of_our_forms_refuses_out_of_range_values(superuser, world):
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    sent = posts(client)
    assert set(sent) == our_numeric_fields(), "a number field without its walk here"
    not_ours = number_fields_of_admin_forms_not_ours(superuser)
    assert not not_ours, f"give their admins a form of ours, and a walk here: {not_ours}"
    failures = []
    for field, post in sorted(sent.items()):
        for value in NUMBERS:
            response = post(value)
            if response.status_code >= 500:
                failures.append(f"{field}={value}: {response.exc_info[1]!r}")
            # What was accepted still works where it is read later: the dashboard.
            elif (index := client.get(reverse("admin:index"))).status_code >= 500:
                failures.append(f"the dashboard after {field}={value}: {index.exc_info[1]!r}")
    call_command("evaluate_alerts", stdout=io.StringIO())
    # django-q's scheduler can compute each schedule's next run: one it could not stopped them all.
    for schedule in Schedule.objects.exclude(repeats=0):
        try:
            schedule.calculate_next_run()
        except (OverflowError, ValueError) as exc:
            failures.append(f"schedule {schedule.name} (every {schedule.minutes} minutes): {exc!r}")
    assert not failures, "\n".join(failures)
    assert not Cutover.objects.exists()
    rule = AlertRule.objects.get(name="reconciliation_stale")
    stored = {
        name: getattr(rule, name)
        for name in ("threshold", "second_threshold", "for_minutes", "repeat_minutes")
    }
    assert alerts.rule_value_problems(rule, stored) == {}
    assert 0 <= rule.threshold <= 366 * 24  # hours
    assert not Alert.objects.filter(silenced_until__isnull=False).exists()


@pytest.mark.django_db
def test_every_admin_page_of_one_object_survives_an_id_that_names_none(superuser, world):
    client = Client(raise_request_exception=False)
    client.force_login(superuser)
    failures = []
    for _model, model_admin in registered():
        for pattern in model_admin.urls:
            names = list(pattern.pattern.converters)
            if not pattern.name or not names:
                continue
            for typed in BAD:
                try:
                    url = reverse(f"admin:{pattern.name}", kwargs=dict.fromkeys(names, typed))
                except NoReverseMatch:  # an <int:> page: the address itself refuses letters
                    continue
                for send in (client.get, client.post):
                    if (response := send(url)).status_code >= 500:
                        failures.append(f"{send.__name__} {url}: {response.exc_info[1]!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.django_db
def test_a_schedule_the_scheduler_cannot_run_is_refused_with_the_reason(superuser):
    """A schedule every 99,999,999,999 minutes (SQLite stores it) stopped django-q's
    scheduler for every schedule; a next run years back kept it stepping through
    each missed minute. Both are refused on django-q's schedule form."""
    client = Client()
    client.force_login(superuser)
    sweep = Schedule.objects.get(name="sweep-reconciliation-runs")
    url = reverse("admin:django_q_schedule_change", args=[sweep.pk])
    fields = ("name", "func", "args", "schedule_type", "minutes", "repeats")
    now = timezone.now()
    form = {
        **{name: getattr(sweep, name) or "" for name in fields},
        "next_run_0": f"{now:%Y-%m-%d}",
        "next_run_1": f"{now:%H:%M:%S}",
    }

    endless = client.post(url, {**form, "minutes": "99999999999"})
    assert "Ensure this value is less than or equal to 32767." in endless.content.decode()
    long_ago = client.post(url, {**form, "next_run_0": f"{now - timedelta(days=400):%Y-%m-%d}"})
    assert "At most 7 days ago" in long_ago.content.decode()
    sweep.refresh_from_db()
    assert sweep.minutes == 1

    assert client.post(url, {**form, "minutes": "5"}).status_code == 302
    sweep.refresh_from_db()
    assert sweep.minutes == 5 and sweep.calculate_next_run() > now
