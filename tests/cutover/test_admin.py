"""The Cutover admin: ops start and walk it, finance approvers accept violations,
every role sees it and its record; outsiders see nothing."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from cutover import record, services
from cutover.models import Cutover, CutoverStatus, StepState
from observability.models import Alert, AlertRule, AlertState
from reconciliation.models import RunTrigger
from revassure import flags, freeze
from revassure.formatting import when
from tests.helpers import csp_refusals, stored_event

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:cutover_cutover_changelist"


def page(cutover):
    return reverse("admin:cutover_cutover_change", args=[cutover.pk])


def step_url(cutover):
    return reverse("admin:cutover_step", args=[cutover.pk])


def test_every_cutover_admin_page_renders_without_inline_code(client, ops, drifted_wallets):
    ended = services.start(actor=ops, name="rehearsal", target="staging")
    services.abort(ended, actor=ops, reason="rehearsal over", gateway=drifted_wallets)
    cutover = services.start(actor=ops, name="go-live", target="production")
    for key in ("freeze", "snapshot", "reconcile"):
        services.confirm(cutover, key, actor=ops, gateway=drifted_wallets, trigger=RunTrigger.ADMIN)
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    for url in [
        reverse(CHANGELIST),
        reverse("admin:cutover_start"),
        page(cutover),
        reverse("admin:cutover_abort", args=[cutover.pk]),
        reverse("admin:cutover_json", args=[cutover.pk]),
        reverse("admin:cutover_print", args=[cutover.pk]),
        page(ended),
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert csp_refusals(response.content.decode()) == [], url
    shown = client.get(page(cutover)).content.decode()
    assert "Accept and continue" in shown and "violations" in shown


def test_ops_start_a_cutover_and_confirm_its_first_step(client, ops, clean_wallets):
    client.force_login(ops)
    assert reverse(CHANGELIST) in client.get(reverse("admin:index")).content.decode()
    assert "start-cutover" in client.get(reverse(CHANGELIST)).content.decode()
    response = client.post(
        reverse("admin:cutover_start"), {"name": "go-live", "target": "production", "monitor_minutes": 45}
    )
    cutover = Cutover.objects.get()
    assert response.status_code == 302 and response["Location"] == page(cutover)
    assert cutover.monitor_minutes == 45 and cutover.started_by == ops

    client.post(step_url(cutover), {"step": "snapshot"})
    assert cutover.steps.get(key="snapshot").state == StepState.PENDING
    refused = client.get(page(cutover)).content.decode()
    assert "step 1 (Freeze manual balance changes) must be confirmed before step 2" in refused

    client.post(step_url(cutover), {"step": "freeze", "note": "all quiet"})
    step = cutover.steps.get(key="freeze")
    assert step.state == StepState.DONE and step.note == "all quiet" and step.confirmed_by == ops
    assert freeze.current().reason == "cutover go-live"
    shown = client.get(page(cutover)).content.decode()
    assert "Confirm step 2" in shown and "cutover go-live" in shown


def test_other_roles_cannot_start_confirm_or_abort(client, ops, reviewer, approver, outsider, clean_wallets):
    cutover = services.start(actor=ops, name="go-live", target="production")
    for person in (reviewer, approver, outsider):
        client.force_login(person)
        assert client.get(reverse("admin:cutover_start")).status_code == 403
        assert client.post(step_url(cutover), {"step": "freeze"}).status_code == 403
        assert client.get(reverse("admin:cutover_abort", args=[cutover.pk])).status_code == 403
    assert cutover.steps.get(key="freeze").state == StepState.PENDING
    for person in (reviewer, approver):
        client.force_login(person)
        shown = client.get(page(cutover)).content.decode()
        assert (
            "step-form" not in shown
            and "start-cutover" not in client.get(reverse(CHANGELIST)).content.decode()
        )
    client.force_login(outsider)
    assert client.get(page(cutover)).status_code == 403
    assert client.get(reverse("admin:cutover_json", args=[cutover.pk])).status_code == 403
    assert client.get(reverse("admin:cutover_print", args=[cutover.pk])).status_code == 403


def test_only_a_finance_approver_accepts_a_reconciliation_with_violations(
    client, ops, reviewer, approver, drifted_wallets, django_capture_on_commit_callbacks
):
    cutover = services.start(actor=ops, name="go-live", target="production")
    client.force_login(ops)
    for key in ("freeze", "snapshot", "reconcile"):
        # The snapshot and the run go to the workers (in process here) once the request commits.
        with django_capture_on_commit_callbacks(execute=True):
            client.post(step_url(cutover), {"step": key})
    assert cutover.steps.get(key="reconcile").state == StepState.NEEDS_ACCEPTANCE
    assert "waits for a finance approver" in client.get(page(cutover)).content.decode()
    for person in (ops, reviewer):
        client.force_login(person)
        response = client.post(step_url(cutover), {"step": "reconcile", "accept": "looks fine"})
        assert response.status_code == 403
    client.force_login(approver)
    client.post(step_url(cutover), {"step": "reconcile", "accept": "u1 is a known test wallet"})
    step = cutover.steps.get(key="reconcile")
    assert step.state == StepState.DONE and step.accepted_by == approver
    assert "u1 is a known test wallet" in client.get(page(cutover)).content.decode()


def test_ops_abort_with_the_rollback_and_the_page_says_what_is_left(client, ops, reviewer, clean_wallets):
    cutover = services.start(actor=ops, name="go-live", target="production")
    for key in ("freeze", "snapshot"):
        services.confirm(cutover, key, actor=ops, gateway=clean_wallets, trigger=RunTrigger.ADMIN)
    flag = flags.known_flags()[0]
    client.force_login(ops)
    assert client.post(reverse("admin:cutover_abort", args=[cutover.pk]), {"reason": ""}).status_code == 200
    response = client.post(
        reverse("admin:cutover_abort", args=[cutover.pk]),
        {"reason": "provider outage", "unfreeze": "on", "flags_off": [flag]},
    )
    assert response.status_code == 302
    cutover.refresh_from_db()
    assert cutover.status == CutoverStatus.ABORTED and cutover.abort_reason == "provider outage"
    assert freeze.current() is None and not flags.is_enabled(flag)
    shown = client.get(page(cutover)).content.decode()
    assert "provider outage" in shown and "restore_snapshot" in shown and "verifies" in shown
    assert "step-form" not in shown and "abort-cutover" not in shown

    client.force_login(reviewer)
    downloaded = client.get(reverse("admin:cutover_json", args=[cutover.pk]))
    assert downloaded["Content-Disposition"] == f'attachment; filename="cutover-{cutover.pk}.json"'
    exported = json.loads(downloaded.content)
    assert exported["checksum"] == cutover.checksum and record.verify_export(exported)
    printed = client.get(reverse("admin:cutover_print", args=[cutover.pk])).content.decode()
    assert cutover.checksum in printed and "provider outage" in printed and 'id="nav-sidebar"' not in printed


def confirm_up_to_monitoring(cutover, ops, gateway):
    """Every step before the monitor step, confirmed by ops in the admin's way."""
    for key, extra in [
        ("freeze", {}),
        ("snapshot", {}),
        ("reconcile", {}),
        ("promote", {"revision": "r1"}),
        ("switch_webhooks", {}),
    ]:
        services.confirm(cutover, key, actor=ops, gateway=gateway, trigger=RunTrigger.ADMIN, **extra)


def test_the_monitor_step_shows_time_left_open_alerts_and_webhook_outcomes(client, ops, clean_wallets):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        cutover = services.start(actor=ops, name="go-live", target="production", monitor_minutes=60)
        confirm_up_to_monitoring(cutover, ops, clean_wallets)
    with time_machine.travel(start + timedelta(minutes=2), tick=False):
        delivery = stored_event("evt_new_endpoint")
    Alert.objects.create(
        rule=AlertRule.objects.get(name="webhooks_unhealthy"),
        state=AlertState.OPEN,
        summary="webhooks failing",
        started_at=start,
    )
    client.force_login(ops)
    with time_machine.travel(start + timedelta(minutes=15), tick=False):
        shown = client.get(page(cutover)).content.decode()
    until = when(cutover.steps.get(key="switch_webhooks").confirmed_at + timedelta(minutes=60))
    assert f"45\xa0minutes left (until {until})" in shown and "webhooks failing" in shown
    assert "Webhooks unhealthy (open): webhooks failing" in shown
    assert f"{delivery.status} 1" in shown and "evt_new_endpoint" in shown
    assert "Override reason" in shown


def test_the_monitor_steps_record_names_the_alerts_it_was_confirmed_over_not_their_json(
    client, ops, clean_wallets
):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        cutover = services.start(actor=ops, name="go-live", target="production", monitor_minutes=1)
        confirm_up_to_monitoring(cutover, ops, clean_wallets)
    Alert.objects.create(
        rule=AlertRule.objects.get(name="webhooks_unhealthy"),
        state=AlertState.OPEN,
        summary="webhooks failing",
        started_at=start,
    )
    with time_machine.travel(start + timedelta(minutes=2), tick=False):
        services.confirm(
            cutover,
            "monitor",
            actor=ops,
            gateway=clean_wallets,
            trigger=RunTrigger.ADMIN,
            override="the old endpoint retrying",
        )
        client.force_login(ops)
        shown = client.get(page(cutover)).content.decode()
    assert "Webhooks unhealthy (open): webhooks failing" in shown
    assert "{&quot;" not in shown and '{"id"' not in shown


@pytest.mark.parametrize("minutes", ["99999999999999999999", "10000000000", "10081", "0", "²"])
def test_a_monitoring_time_out_of_range_is_refused_on_the_start_form(client, ops, clean_wallets, minutes):
    client.force_login(ops)
    response = client.post(
        reverse("admin:cutover_start"),
        {"name": "go-live", "target": "production", "monitor_minutes": minutes},
    )
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not Cutover.objects.exists()


def test_a_cutover_stored_with_an_endless_monitoring_time_still_shows_and_can_be_confirmed(
    client, ops, clean_wallets
):
    # Started before the bound was enforced: 10,000,000,000 minutes were accepted then
    # (on SQLite; PostgreSQL's integer column stops at 2,147,483,647).
    cutover = services.start(actor=ops, name="go-live", target="production")
    stored = min(10_000_000_000, connection.ops.integer_field_range("PositiveIntegerField")[1])
    Cutover.objects.filter(pk=cutover.pk).update(monitor_minutes=stored)
    for key in ("freeze", "snapshot", "reconcile", "promote", "switch_webhooks"):
        extra = {"revision": "revassure-00042-abc"} if key == "promote" else {}
        services.confirm(cutover, key, actor=ops, gateway=clean_wallets, trigger=RunTrigger.ADMIN, **extra)
    client.force_login(ops)

    assert client.get(page(cutover)).status_code == 200
    response = client.post(
        step_url(cutover), {"step": "monitor", "override": "the planned time was a typo"}, follow=True
    )

    assert response.status_code == 200 and "confirmed" in response.content.decode()
    monitor = cutover.steps.get(key="monitor")
    assert monitor.state == StepState.DONE and monitor.override_reason == "the planned time was a typo"


def test_the_freeze_page_refuses_to_lift_a_cutovers_freeze_and_names_the_cutover(client, ops, clean_wallets):
    cutover = services.start(actor=ops, name="go-live", target="production")
    services.confirm(cutover, "freeze", actor=ops, gateway=clean_wallets, trigger=RunTrigger.ADMIN)
    client.force_login(ops)

    # From the freeze page, and from the dashboard's freeze tile (which posts there with `next`).
    for extra in ({}, {"next": reverse("admin:index")}):
        response = client.post(
            reverse("admin:revassure_freeze_toggle"), {"state": "unfreeze", "reason": "adjustment", **extra}
        )
        assert response.status_code == 200
        refusal = response.context["form"].non_field_errors()[0]
        assert "cutover go-live" in refusal and "holds the freeze" in refusal
    assert freeze.current() is not None


def test_the_dashboard_says_the_cutover_holds_the_freeze_and_offers_no_unfreeze(client, ops, clean_wallets):
    cutover = services.start(actor=ops, name="go-live", target="production")
    services.confirm(cutover, "freeze", actor=ops, gateway=clean_wallets, trigger=RunTrigger.ADMIN)
    client.force_login(ops)

    page = client.get(reverse("admin:index")).content.decode()

    assert 'id="freeze-held"' in page and "cutover go-live (started by olga at" in page
    assert "lifted by the cutover&#x27;s last step (unfreeze)" in page
    assert "Unfreeze manual changes" not in page and 'id="freeze-form"' not in page


@pytest.mark.parametrize("typed", ["abc", "²", "99999999999999999999999"])
def test_a_cutover_address_that_names_no_cutover_is_not_found(client, ops, typed):
    client.force_login(ops)
    assert client.get(f"/admin/cutover/cutover/{typed}/change/").status_code == 404
