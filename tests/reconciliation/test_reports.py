import pytest
from django.db import DatabaseError, connection, transaction

from reconciliation import reports, services
from reconciliation.models import (
    BreakSighting,
    ReconciliationRun,
    RunTrigger,
    TrackedRun,
    Violation,
)
from revassure.sealing.models import FinishedRecordError
from tests.helpers import firestore_client, put_wallets, without_immutability_triggers


def reconcile(gateway):
    return services.run_inline(actor=None, trigger=RunTrigger.COMMAND, gateway=gateway)


@pytest.fixture
def three_runs(gateway):
    put_wallets(gateway, {"a": (10, [9]), "b": (4, [4]), "c": (1, [3])})
    return [reconcile(gateway) for _ in range(3)]


@pytest.mark.django_db
def test_completed_runs_form_a_hash_chain(three_runs, gateway):
    first, second, third = three_runs

    assert [r.chain_seq for r in three_runs] == [1, 2, 3]
    assert first.previous_checksum == ""
    assert second.previous_checksum == first.checksum
    assert third.previous_checksum == second.checksum
    assert first.checksum != second.checksum  # the chain position is part of the content
    assert reports.verify(gateway=gateway) == (3, [])


@pytest.mark.django_db
def test_the_checksum_covers_the_canonical_content(three_runs):
    run = three_runs[0]
    assert reports.compute_checksum(run) == run.checksum
    run.total_abs_drift += 1
    assert reports.compute_checksum(run) != run.checksum


@pytest.mark.django_db
def test_each_report_is_mirrored_to_firestore(three_runs, gateway):
    run = three_runs[1]
    mirror = gateway.get_report(str(run.pk))
    assert mirror["checksum"] == run.checksum
    assert mirror["violations_count"] == 2
    assert mirror["previous_checksum"] == three_runs[0].checksum
    docs = (
        firestore_client(gateway.project)
        .collection("reconciliationReports")
        .document(str(run.pk))
        .collection("violations")
    )
    assert {d.id: d.to_dict()["delta"] for d in docs.stream()} == {"a": 1, "c": -2}


@pytest.mark.django_db
def test_model_and_database_refuse_to_change_a_finished_run(three_runs):
    run = three_runs[0]
    run.total_abs_drift = 0
    with pytest.raises(FinishedRecordError):
        run.save()
    with pytest.raises(FinishedRecordError):
        run.delete()
    violation = run.violations.first()
    violation.delta = 0
    with pytest.raises(FinishedRecordError):
        violation.save()
    # Bypassing the model, the database still refuses.
    for statement in [
        f"UPDATE reconciliation_reconciliationrun SET total_abs_drift = 0 WHERE id = {run.pk}",
        f"DELETE FROM reconciliation_reconciliationrun WHERE id = {run.pk}",
        f"UPDATE reconciliation_violation SET delta = 0 WHERE run_id = {run.pk}",
        f"DELETE FROM reconciliation_violation WHERE run_id = {run.pk}",
    ]:
        with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(statement)
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        Violation.objects.bulk_create([Violation(run=run, uid="new", kind="drift", ledger_sum=0, entries=0)])


@pytest.mark.django_db
def test_verify_names_a_run_whose_violation_was_edited(three_runs, gateway):
    without_immutability_triggers()
    target = three_runs[1]
    Violation.objects.filter(run=target, uid="a").update(delta=0)

    checked, problems = reports.verify(gateway=gateway)

    assert checked == 3
    assert [str(p.run_id) for p in problems] == [str(target.pk)] * 2
    assert "checksum mismatch" in problems[0].message
    # The mirror still holds the report as sealed: it no longer matches the edited one.
    assert (
        problems[1].message
        == "Firestore mirror differs from the report: violation a: delta is 1, the report has 0"
    )


@pytest.mark.django_db
def test_verify_catches_a_recomputed_checksum_through_the_chain(three_runs, gateway):
    without_immutability_triggers()
    target = three_runs[0]
    ReconciliationRun.objects.filter(pk=target.pk).update(total_abs_drift=0)
    target.refresh_from_db()
    ReconciliationRun.objects.filter(pk=target.pk).update(checksum=reports.compute_checksum(target))

    _, problems = reports.verify(gateway=gateway)

    messages = {(p.run_id, p.message) for p in problems}
    assert (three_runs[1].pk, "previous checksum does not match the report before it") in messages
    assert any(run_id == str(target.pk) and "mirror" in message for run_id, message in messages)


@pytest.mark.django_db
def test_verify_catches_a_deleted_report(three_runs, gateway):
    without_immutability_triggers()
    # Everything that refers to the report goes too (its breaks' sightings and tracking).
    BreakSighting.objects.filter(run=three_runs[1]).delete()
    TrackedRun.objects.filter(run=three_runs[1]).delete()
    Violation.objects.filter(run=three_runs[1]).delete()
    ReconciliationRun.objects.filter(pk=three_runs[1].pk).delete()

    _, problems = reports.verify(gateway=gateway)

    assert any(p.run_id == three_runs[2].pk and "a report is missing" in p.message for p in problems)
    assert any(p.run_id == str(three_runs[1].pk) and "not in the database" in p.message for p in problems)


@pytest.mark.django_db
def test_verify_catches_a_tampered_or_missing_mirror(three_runs, gateway):
    reports_collection = firestore_client(gateway.project).collection("reconciliationReports")
    reports_collection.document(str(three_runs[0].pk)).update({"checksum": "0" * 64})
    reports_collection.document(str(three_runs[2].pk)).delete()

    _, problems = reports.verify(gateway=gateway)

    assert {(str(p.run_id), p.message) for p in problems} == {
        (
            str(three_runs[0].pk),
            f'Firestore mirror differs from the report: checksum is "{"0" * 64}", '
            f'the report has "{three_runs[0].checksum}"',
        ),
        (str(three_runs[2].pk), "not mirrored to Firestore reconciliationReports"),
    }


@pytest.mark.django_db
def test_verify_compares_every_field_and_violation_of_the_mirror_not_only_its_checksum(three_runs, gateway):
    """Issue 27 item 8: a mirror whose counts, totals or violations were changed,
    with its checksum left alone, is named field by field and document by document."""
    first, second = (str(run.pk) for run in three_runs[:2])
    mirrors = firestore_client(gateway.project).collection("reconciliationReports")
    mirrors.document(first).update({"violations_count": 0, "total_abs_drift": 0})
    mirrors.document(second).collection("violations").document("c").delete()
    mirrors.document(second).collection("violations").document("a").update({"delta": 5})
    mirrors.document(second).collection("violations").document("z").set({"uid": "z"})

    checked, problems = reports.verify(gateway=gateway)

    assert checked == 3
    prefix = "Firestore mirror differs from the report: "
    assert sorted((str(p.run_id), p.message) for p in problems) == sorted(
        [
            (first, prefix + "total_abs_drift is 0, the report has 3"),
            (first, prefix + "violations_count is 0, the report has 2"),
            (second, prefix + "violation a: delta is 5, the report has 1"),
            (second, prefix + "violation c is missing"),
            (second, prefix + "violation z is there, the report has no such violation"),
        ]
    )
    deleted = next(p for p in problems if "violation c" in p.message)
    assert deleted.difference["document"] == f"reconciliationReports/{second}/violations/c"
    assert deleted.difference["report"]["delta"] == -2


def test_a_violations_details_read_as_one_line_with_what_is_not_listed_counted():
    details = {
        "wallet": "points is not an integer: float 10.5",
        "malformed_entries": [
            {"entry": "e001", "amount": "str '10'", "problem": "not a number"},
            {"entry": "e002", "amount": "missing", "problem": "missing"},
        ],
        "malformed_entries_total": 52,
    }

    assert reports.describe_details(details) == (
        "points is not an integer: float 10.5; e001: not a number (str '10'); "
        "e002: missing (missing); and 50 more malformed entries"
    )


@pytest.mark.parametrize(
    "details, line",
    [
        ({}, ""),
        (
            {"wallet": "wallet document missing; its points count as 0"},
            "wallet document missing; its points count as 0",
        ),
        (
            {
                "malformed_entries": [{"entry": "e1", "amount": "float 2.5", "problem": "not an integer"}],
                "malformed_entries_total": 1,
            },
            "e1: not an integer (float 2.5)",
        ),
    ],
)
def test_a_violations_details_say_only_what_there_is(details, line):
    assert reports.describe_details(details) == line


@pytest.mark.django_db
def test_a_runs_summary_holds_its_counts_liability_checksum_and_error(gateway):
    put_wallets(gateway, {"a": (10, [9]), "b": (4, [4])})
    run = reconcile(gateway)

    assert reports.run_summary(run) == {
        "run_id": run.pk,
        "status": "completed",
        "wallets_checked": 2,
        "violations_count": 1,
        "total_abs_drift": 1,
        "total_wallet_points": 14,
        "total_ledger_sum": 13,
        "liability_difference": 1,
        # How it read (tests/reconciliation/test_point_in_time.py checks these).
        "read_mode": run.read_mode,
        "read_time": run.read_time and run.read_time.isoformat(),
        "read_mode_reason": run.read_mode_reason,
        "checksum": run.checksum,
        "error": "",
    }
