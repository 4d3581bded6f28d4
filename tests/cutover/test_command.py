"""`manage.py cutover` drives the same runbook from a shell."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from cutover import record
from cutover.models import Cutover, CutoverStatus
from reconciliation.models import ReconciliationRun, RunTrigger
from revassure import freeze

pytestmark = pytest.mark.django_db


def cutover(*args):
    out = io.StringIO()
    call_command("cutover", *args, stdout=out)
    return out.getvalue()


def test_the_command_drives_a_whole_cutover_and_prints_json(ops, clean_wallets, monkeypatch):
    monkeypatch.setenv("REVASSURE_ACTOR", "olga")
    cutover("start", "--name", "go-live", "--target", "production", "--monitor-minutes", "1")
    cutover("confirm", "freeze", "--note", "frozen from the shell")
    cutover("confirm", "snapshot")
    cutover("confirm", "reconcile")
    cutover("confirm", "promote", "--revision", "revassure-00042-abc")
    cutover("confirm", "switch_webhooks")
    cutover("confirm", "monitor", "--override", "rehearsal: no time to wait")
    printed = json.loads(cutover("confirm", "unfreeze", "--json"))

    assert record.verify_export(printed)
    assert printed["record"]["status"] == "finished"
    assert [s["confirmed_by"] for s in printed["record"]["steps"]] == ["olga"] * 7
    assert printed["record"]["steps"][0]["note"] == "frozen from the shell"
    assert ReconciliationRun.objects.get().trigger == RunTrigger.COMMAND
    status = json.loads(cutover("status", "--json"))
    assert status == printed
    assert "sealed, checksum" in cutover("status")


def test_the_command_says_what_is_wrong(ops, reviewer, clean_wallets, monkeypatch):
    monkeypatch.delenv("REVASSURE_ACTOR", raising=False)
    with pytest.raises(CommandError, match="say who is doing this"):
        cutover("start", "--name", "n", "--target", "production")
    with pytest.raises(CommandError, match="no cutover is in progress"):
        cutover("confirm", "freeze", "--actor", "olga")
    with pytest.raises(CommandError, match="may not start a cutover"):
        cutover("start", "--name", "n", "--target", "production", "--actor", "alice")
    cutover("start", "--name", "n", "--target", "production", "--actor", "olga")
    with pytest.raises(CommandError, match=r"step 1 \(Freeze manual balance changes\) must be confirmed"):
        cutover("confirm", "snapshot", "--actor", "olga")
    aborted = json.loads(cutover("abort", "--reason", "not today", "--unfreeze", "--actor", "olga", "--json"))
    assert aborted["record"]["abort_reason"] == "not today"
    assert Cutover.objects.get().status == CutoverStatus.ABORTED


@pytest.mark.parametrize("minutes", ["99999999999999999999", "10000000000", "0"])
def test_the_command_refuses_a_monitoring_time_out_of_range(ops, clean_wallets, minutes):
    with pytest.raises(CommandError, match="the monitoring time must be from 1 to 10,080 minutes"):
        cutover(
            "start", "--name", "n", "--target", "production", "--monitor-minutes", minutes, "--actor", "olga"
        )
    assert not Cutover.objects.exists()


def test_unfreeze_during_a_cutover_is_refused_naming_the_cutover(ops, clean_wallets):
    cutover("start", "--name", "go-live", "--target", "production", "--actor", "olga")
    cutover("confirm", "freeze", "--actor", "olga")

    with pytest.raises(CommandError, match="cutover go-live .* is in progress and holds the freeze"):
        call_command("unfreeze", "--reason", "need an adjustment", "--actor", "olga", stdout=io.StringIO())

    assert freeze.current() is not None
