"""The sealing kernel (revassure/sealing): one canonical form, one chain over
every registered report kind, and triggers that make every sealed and every
history table refuse edits in the database itself (SQLite here; PostgreSQL
when DATABASE_URL says so)."""

import hashlib
import importlib
import io
import json

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from cutover import record, services
from cutover.models import Cutover, CutoverStatus, CutoverStep
from observability.models import AlertRule, AlertRuleChange
from reconciliation.models import Violation
from revassure.sealing import chain
from revassure.sealing.canonical import canonical, legacy_utf8, line
from revassure.sealing.models import AppendOnly, FinishedRecordError, SealedRun
from revassure.sealing.operations import RefuseChanges
from settlement.models import FollowUp, SettlementRow, SettlementRun
from tests.helpers import without_immutability_triggers

pytestmark = pytest.mark.django_db


def raw(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def refused(sql, match):
    with pytest.raises(DatabaseError, match=match), transaction.atomic():
        raw(sql)


def verify_reports(*args):
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_reports", "--skip-firestore", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


# -- one canonical form ---------------------------------------------------------


def test_the_canonical_line_is_the_form_reports_have_always_been_sealed_in():
    data = {"uid": "wallet-ü", "amounts": [1, 2.5, None, True], "details": {"z": "x\x7f", "a": "\n"}}
    # reconciliation/reports.py and settlement/records.py, before the kernel:
    before = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
    assert line(data) == before
    assert line(data).decode("ascii").endswith("\n")


def test_for_ascii_text_the_old_cutover_form_is_the_very_same_bytes():
    ascii_record = {"name": "go-live", "steps": [{"note": "done", "evidence": {"n": 3}}]}
    assert canonical(ascii_record) == legacy_utf8(ascii_record)
    assert canonical({"note": "été"}) != legacy_utf8({"note": "été"})


# -- the registry and verify_reports -------------------------------------------------


def test_every_report_kind_registers_with_the_kernel_from_its_app():
    assert [kind.name for kind in chain.kinds()] == ["reconciliation", "cutover", "settlement"]
    assert {kind.model._meta.label for kind in chain.kinds()} == {
        "reconciliation.ReconciliationRun",
        "cutover.Cutover",
        "settlement.SettlementRun",
    }


def test_verify_reports_is_a_core_command():
    assert apps.get_app_config("revassure").name == "revassure"
    command = importlib.import_module("revassure.management.commands.verify_reports")
    assert command.Command.help.startswith("Recompute every sealed report's checksum")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("reconciliation.management.commands.verify_reports")


@pytest.fixture
def aborted(ops, gateway):
    """Two cutovers, sealed one after the other (the first's name and reason not ASCII)."""
    sealed = []
    for name in ("Bascule été", "second"):
        cutover = services.start(actor=ops, name=name, target="staging")
        services.abort(cutover, actor=ops, reason="répétition terminée", gateway=gateway)
        cutover.refresh_from_db()
        sealed.append(cutover)
    return sealed


def test_cutover_records_are_sealed_in_the_canonical_form_and_chained(aborted):
    first, second = aborted
    assert first.checksum == hashlib.sha256(canonical(first.record)).hexdigest()
    assert first.checksum != hashlib.sha256(legacy_utf8(first.record)).hexdigest()
    assert (first.chain_seq, first.previous_checksum) == (1, "")
    assert (second.chain_seq, second.previous_checksum) == (2, first.checksum)
    assert record.verify(first) == [] and record.verify_export(record.export(first))

    code, out, err = verify_reports("--json")
    assert code == 0 and err == ""
    assert json.loads(out) == {"ok": True, "runs_checked": 2, "problems": []}


def test_verify_reports_names_a_cutover_whose_rows_were_edited(aborted):
    first, _ = aborted
    without_immutability_triggers("cutover_cutoverstep")
    CutoverStep.objects.filter(cutover=first, key="freeze").update(note="edited")

    code, out, err = verify_reports()
    assert code == 2 and out == ""
    assert f"run cutover {first.pk}: checksum mismatch: stored {first.checksum}, content " in err


def test_verify_reports_finds_a_deleted_cutover_by_the_gap_in_its_chain(aborted):
    first, second = aborted
    without_immutability_triggers("cutover_cutover", "cutover_cutoverstep")
    CutoverStep.objects.filter(cutover=first).delete()
    Cutover.objects.filter(pk=first.pk).delete()

    code, _, err = verify_reports()
    assert code == 2
    assert f"run cutover {second.pk}: chain position 2, expected 1: a report is missing" in err


def test_a_cutover_sealed_before_the_kernel_still_verifies(ops):
    """Its checksum was taken over UTF-8 text (ensure_ascii=False), as cutover/record.py did."""
    cutover = services.start(actor=ops, name="Bascule été", target="staging")
    cutover.status, cutover.finished_at = CutoverStatus.ABORTED, timezone.now()
    old = record.build(cutover)
    old_checksum = hashlib.sha256(legacy_utf8(old)).hexdigest()
    Cutover.objects.filter(pk=cutover.pk).update(
        status=cutover.status,
        finished_at=cutover.finished_at,
        record=old,
        checksum=old_checksum,
        chain_seq=1,
        previous_checksum="",
    )
    cutover.refresh_from_db()

    assert record.verify(cutover) == []
    assert record.verify_export(json.loads(json.dumps(record.export(cutover))))
    assert verify_reports()[0] == 0


def test_the_migration_chains_the_cutovers_sealed_before_it_in_the_order_they_ended(ops):
    migration = importlib.import_module("cutover.migrations.0003_cutover_chain_and_triggers")
    ended = []
    for name in ("first", "second"):
        cutover = services.start(actor=ops, name=name, target="staging")
        cutover.status, cutover.finished_at = CutoverStatus.FINISHED, timezone.now()
        checksum = record.checksum(record.build(cutover))
        Cutover.objects.filter(pk=cutover.pk).update(
            status=cutover.status,
            finished_at=cutover.finished_at,
            record=record.build(cutover),
            checksum=checksum,
        )
        ended.append(checksum)
    without_immutability_triggers("cutover_cutover")  # the migration chains them before it adds the triggers

    migration.chain_sealed_cutovers(apps, None)

    chained = list(Cutover.objects.order_by("chain_seq").values_list("chain_seq", "previous_checksum"))
    assert chained == [(1, ""), (2, ended[0])]
    assert verify_reports()[0] == 0


# -- the database refuses edits of sealed records and histories ---------------------------


@pytest.fixture
def settlement(ops):
    """A finished settlement run with a row and a follow-up, and a running one with a row."""
    finished = SettlementRun.objects.create(status="running", trigger="command", source="s.csv")
    row = SettlementRow.objects.create(run=finished, outcome="missing_in_ledger", payment_id="pay_1")
    SettlementRun.objects.filter(pk=finished.pk).update(status="completed", checksum="0" * 64, chain_seq=1)
    follow_up = FollowUp.objects.create(row=row, kind="explained", actor=ops, reason="known")
    running = SettlementRun.objects.create(status="running", trigger="command", source="t.csv")
    open_row = SettlementRow.objects.create(run=running, outcome="matched", payment_id="pay_2")
    return finished, row, follow_up, running, open_row


def test_a_finished_settlement_run_and_its_rows_cannot_be_edited_or_deleted(settlement):
    finished, row, _, _, _ = settlement
    refused(f"UPDATE settlement_settlementrun SET matched = 9 WHERE id = {finished.pk}", "immutable")
    refused(f"DELETE FROM settlement_settlementrun WHERE id = {finished.pk}", "immutable")
    refused(f"UPDATE settlement_settlementrow SET points = 61 WHERE id = {row.pk}", "immutable")
    refused(f"DELETE FROM settlement_settlementrow WHERE id = {row.pk}", "immutable")
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        SettlementRow.objects.bulk_create(
            [SettlementRow(run=finished, outcome="matched", payment_id="pay_9")]
        )

    assert SettlementRow.objects.get(pk=row.pk).points is None
    assert SettlementRun.objects.get(pk=finished.pk).matched == 0


def test_a_running_settlement_run_still_fills_in_and_seals(settlement):
    _, _, _, running, open_row = settlement
    SettlementRow.objects.filter(pk=open_row.pk).update(points=5)
    SettlementRun.objects.filter(pk=running.pk).update(matched=1, status="completed")
    assert SettlementRun.objects.get(pk=running.pk).matched == 1


def test_settlement_follow_ups_are_append_only(settlement, ops):
    _, row, follow_up, _, _ = settlement
    refused(f"UPDATE settlement_followup SET reason = 'other' WHERE id = {follow_up.pk}", "is append-only")
    refused(f"DELETE FROM settlement_followup WHERE id = {follow_up.pk}", "is append-only")
    FollowUp.objects.create(row=row, kind="replay", actor=ops)  # the history still grows
    assert FollowUp.objects.count() == 2


def test_a_sealed_cutover_and_its_steps_cannot_be_edited_or_deleted(aborted):
    first, _ = aborted
    step = first.steps.first()
    refused(f"UPDATE cutover_cutover SET name = 'other' WHERE id = {first.pk}", "immutable")
    refused(f"DELETE FROM cutover_cutover WHERE id = {first.pk}", "immutable")
    refused(f"UPDATE cutover_cutoverstep SET note = 'edited' WHERE id = {step.pk}", "immutable")
    refused(f"DELETE FROM cutover_cutoverstep WHERE id = {step.pk}", "immutable")
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        CutoverStep.objects.bulk_create([CutoverStep(cutover=first, number=99, key="extra")])
    assert record.verify(Cutover.objects.get(pk=first.pk)) == []


def test_an_alert_rules_history_cannot_be_edited_or_deleted(ops):
    change = AlertRuleChange.objects.create(
        rule=AlertRule.objects.first(), changes={"threshold": [1, 2]}, reason="tuning", actor=ops
    )
    change.reason = "rewritten"
    with pytest.raises(FinishedRecordError, match="append-only"):
        change.save()
    with pytest.raises(FinishedRecordError, match="append-only"):
        change.delete()
    refused(f"UPDATE observability_alertrulechange SET reason = 'x' WHERE id = {change.pk}", "is append-only")
    refused(f"DELETE FROM observability_alertrulechange WHERE id = {change.pk}", "is append-only")
    assert AlertRuleChange.objects.get().reason == "tuning"


# The rows a sealed run is made of (a foreign key to it, sealed with it).
SEALED_ROWS = (Violation, SettlementRow, CutoverStep)


def triggers_on(table):
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [table])
        else:
            cursor.execute(
                "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND c.relname = %s",
                [table],
            )
        return [name for (name,) in cursor.fetchall()]


def test_every_sealed_and_history_table_has_its_triggers():
    """A table rebuilt by a later migration on SQLite loses its triggers: this finds it."""
    guarded = [m for m in apps.get_models() if issubclass(m, SealedRun | AppendOnly)] + list(SEALED_ROWS)
    assert {m._meta.label for m in guarded} >= {
        "reconciliation.ReconciliationRun",
        "reconciliation.RequestEvent",
        "reconciliation.BreakNote",
        "settlement.SettlementRun",
        "settlement.FollowUp",
        "cutover.Cutover",
        "observability.AlertRuleChange",
        "revassure.FreezeEvent",
        "revassure.FeatureFlagChange",
    }
    unguarded = [m._meta.db_table for m in guarded if not triggers_on(m._meta.db_table)]
    assert unguarded == []


def test_the_operation_names_what_it_refuses_and_rebuilds_itself():
    operation = RefuseChanges("app_row", finished=("done",), parent=("app_run", "run_id"))
    assert operation.deconstruct() == (
        "RefuseChanges",
        ["app_row"],
        {"finished": ("done",), "parent": ("app_run", "run_id")},
    )
    assert operation.describe() == "Refuse changes to the rows of a finished record in app_row"
    assert RefuseChanges("app_history").describe() == "Refuse changes to any row in app_history"
    with pytest.raises(ValueError, match="finished statuses"):
        RefuseChanges("app_row", parent=("app_run", "run_id"))
    with pytest.raises(RuntimeError, match="no append-only triggers for database oracle"):
        RefuseChanges("app_history").forwards_sql("oracle")
