"""Snapshot, verify, restore into a second project: the same documents, field types included."""

import datetime as dt
import gzip
import json
import math

import pytest
from django.core.management import call_command
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import firestore

from revassure.firestore import MISSING, get_gateway
from revassure.firestore.model import identity_path
from revassure.firestore.snapshots import ROOTS
from snapshots import services
from snapshots.models import Restore, Snapshot, Verification
from tests.helpers import firestore_client, put_wallets

pytestmark = pytest.mark.django_db

# The npm emulator stores integers up to 2^53 - 1 (JavaScript's safe integers);
# past them (2^53 + 1, 2^63 - 1) the format is checked without it, in test_format.py.
NEAR_2_53 = 2**53 - 1  # 9007199254740991
# Firestore keeps timestamps to the microsecond (Google's emulator truncates finer ones).
WHEN = DatetimeWithNanoseconds(2026, 11, 20, 10, 0, 0, nanosecond=123456000, tzinfo=dt.UTC)
ODD_ENTRY = {
    "amount": NEAR_2_53,
    "type": "purchase",
    "createdAt": WHEN,
    "receipt": b"\x00\xff\x10binary",
    "source": {"provider": "paynow", "ids": ["pay_1", 7, None, {"deep": [1.5, True]}], "empty": {}},
    "where": firestore.GeoPoint(48.8566, 2.3522),
}


def seed(gateway):
    """Wallets with integer, string, float and missing amounts, every Firestore type,
    and a document in each of the product's collections."""
    put_wallets(
        gateway,
        {
            "u1": (130, [100, 30]),
            "u2": (120, ["120"]),  # a string amount
            "u3": (12, [12.5]),  # a float amount
            "u4": (5, [5, MISSING]),  # a missing amount
            "u5": (MISSING, [1]),  # a wallet without points
        },
    )
    client = firestore_client(gateway.project)
    client.document("wallets/u6").set({"points": NEAR_2_53, "updatedAt": WHEN})
    client.document("wallets/u6/ledger/big").set({**ODD_ENTRY, "wallet": client.document("wallets/u6")})
    client.document("config/edge").set(
        {"nan": math.nan, "inf": math.inf, "minus_inf": -math.inf, "minus_zero": -0.0, "low": -(2**53 - 1)}
    )
    gateway.put_report("run-1", {"checksum": "c1", "violations": 1}, [{"uid": "u2", "delta": 0}])
    gateway.put_migration("7", {"status": "completed", "applied": 3})
    gateway.put_config("adjustments", {"frozen": False})
    client.document("auditLog/rebalance-1").set({"uid": "u1", "before": 120, "after": 130, "at": WHEN})
    client.document(f"ledgerIdentities/{identity_path('purchase-pay_1')}").set(
        {"uid": "u1", "entryId": "purchase-pay_1", "deliveryId": 4}
    )


def every_document(gateway) -> dict:
    """{path: raw protobuf fields} of every document a snapshot covers, read from Firestore."""
    found = {}
    for wallet, ledger in gateway.snapshot_wallets():
        for document in (wallet, *ledger):
            found[document["path"]] = document
    for root in ROOTS[1:]:
        for document in gateway.snapshot_collection(root):
            found[document["path"]] = document
    return found


@pytest.fixture
def target(firestore_emulator, settings):
    """A second, empty project on the same emulator, allowed as a restore target."""
    project = "restore-target-" + settings.GOOGLE_CLOUD_PROJECT.removeprefix("test-")
    settings.RESTORE_ALLOWED_PROJECTS = [project]
    settings.FIRESTORE_PRODUCTION_PROJECT = "revassure-prod"
    return project


def test_snapshot_verify_restore_gives_the_same_documents_and_field_types(gateway, target, tmp_path, capsys):
    seed(gateway)
    out = tmp_path / "snap"

    call_command("snapshot_firestore", str(out), "--json")
    printed = json.loads(capsys.readouterr().out)
    call_command("verify_snapshot", str(out), "--json")
    verified = json.loads(capsys.readouterr().out)
    call_command("restore_snapshot", str(out), "--project", target, "--json")
    restored = json.loads(capsys.readouterr().out)

    snapshot = Snapshot.objects.get()
    assert set(printed) == {"path", "wallets", "entries", "points_total", "ledger_total", "manifest_sha256"}
    assert printed == {
        "path": str(out.resolve()),
        "wallets": 6,
        "entries": 8,
        "points_total": 130 + 120 + 12 + 5 + NEAR_2_53,  # u5 has no points
        "ledger_total": 100 + 30 + 5 + 1 + NEAR_2_53,  # integer amounts only
        "manifest_sha256": snapshot.manifest_sha256,
    }
    assert snapshot.verification == Verification.INTACT
    assert verified["ok"] is True and verified["errors"] == []
    assert (verified["wallets"], verified["entries"]) == (6, 8)
    assert {v["uid"]: (v["wallet_points"], v["ledger_sum"], v["delta"]) for v in verified["violations"]} == {
        "u2": (120, 0, None),  # a string amount: malformed, no delta
        "u3": (12, 0, None),
        "u4": (5, 5, None),
        "u5": (None, 1, None),
    }
    assert restored["written"] == len(every_document(gateway)) == 6 + 8 + 2 + 1 + 2 + 1 + 1
    assert Restore.objects.get().written == restored["written"]

    # Document for document, field for field, type for type (the raw values compared).
    source, copy = gateway, get_gateway(target)
    for root, parent, name in [
        ("wallets", source.documents, "wallets"),
        ("ledger", f"{source.documents}/wallets/u6", "ledger"),
        ("violations", f"{source.documents}/reconciliationReports/run-1", "violations"),
    ]:
        ours = {d.name.rsplit("/", 1)[1]: dict(d.fields) for d in source.stream_documents(parent, name)}
        theirs = {
            d.name.rsplit("/", 1)[1]: dict(d.fields)
            for d in copy.stream_documents(parent.replace(source.documents, copy.documents), name)
        }
        if root == "ledger":  # the reference points into the target now, and only that differs
            assert theirs["big"].pop("wallet").reference_value == f"{copy.documents}/wallets/u6"
            assert ours["big"].pop("wallet").reference_value == f"{source.documents}/wallets/u6"
        assert ours == theirs, root
    assert every_document(copy) == every_document(source)


def test_types_survive_the_round_trip_as_the_public_client_reads_them(gateway, target, tmp_path):
    seed(gateway)
    services.take(tmp_path / "snap", actor=None, gateway=gateway)
    services.restore(tmp_path / "snap", project=target)

    copy = firestore_client(target)
    entry = copy.document("wallets/u6/ledger/big").get().to_dict()
    source_entry = firestore_client(gateway.project).document("wallets/u6/ledger/big").get().to_dict()
    assert entry["amount"] == NEAR_2_53 and type(entry["amount"]) is int
    assert entry["createdAt"] == source_entry["createdAt"] == WHEN
    assert entry["receipt"] == ODD_ENTRY["receipt"]
    assert entry["source"] == ODD_ENTRY["source"]
    assert entry["where"] == ODD_ENTRY["where"]
    assert entry["wallet"].path == "wallets/u6"
    # The reference points into the target project, not back into the source.
    target_gateway = get_gateway(target)
    (raw,) = target_gateway.stream_documents(f"{target_gateway.documents}/wallets/u6", "ledger")
    assert raw.fields["wallet"].reference_value == f"{target_gateway.documents}/wallets/u6"
    ledgers = {
        uid: [d.to_dict() for d in copy.collection(f"wallets/{uid}/ledger").stream()]
        for uid in ("u2", "u3", "u4")
    }
    assert [(e["amount"], type(e["amount"])) for e in ledgers["u2"]] == [("120", str)]
    assert [(e["amount"], type(e["amount"])) for e in ledgers["u3"]] == [(12.5, float)]
    assert sorted("amount" in e for e in ledgers["u4"]) == [False, True]
    assert "points" not in copy.document("wallets/u5").get().to_dict()
    edge = copy.document("config/edge").get().to_dict()
    assert math.isnan(edge["nan"]) and edge["inf"] == math.inf and edge["minus_inf"] == -math.inf
    assert math.copysign(1, edge["minus_zero"]) == -1 and edge["low"] == -(2**53 - 1)
    assert copy.document(f"ledgerIdentities/{identity_path('purchase-pay_1')}").get().exists


def test_each_line_keeps_its_type_tag(gateway, tmp_path):
    seed(gateway)
    snapshot = services.take(tmp_path / "snap", actor=None, gateway=gateway)

    with gzip.open(tmp_path / "snap" / "wallets-000001.jsonl.gz") as file:
        lines = {doc["path"]: doc["fields"] for doc in map(json.loads, file)}
    assert lines["wallets/u2/ledger/e000"]["amount"] == {"str": "120"}
    assert lines["wallets/u3/ledger/e000"]["amount"] == {"float": "12.5"}
    assert "amount" not in lines["wallets/u4/ledger/e001"]
    big = lines["wallets/u6/ledger/big"]
    assert big["amount"] == {"int": "9007199254740991"}
    assert big["createdAt"] == {"time": "2026-11-20T10:00:00.123456Z"}
    assert big["wallet"] == {"ref": "wallets/u6"}
    manifest = json.loads((tmp_path / "snap" / "manifest.json").read_text())
    assert manifest["format"] == "revassure-snapshot/1" and manifest["project"] == gateway.project
    assert {f["name"] for f in manifest["files"]} == {
        "wallets-000001.jsonl.gz",
        "reconciliationReports.jsonl.gz",
        "settlementReports.jsonl.gz",
        "dataMigrations.jsonl.gz",
        "auditLog.jsonl.gz",
        "config.jsonl.gz",
        "ledgerIdentities.jsonl.gz",
    }
    assert snapshot.manifest == manifest


def test_a_snapshot_holds_the_settlement_reports_and_restores_them(gateway, target, tmp_path):
    rows = [
        ("41", {"line": 4, "outcome": "missing_in_ledger", "points": 60, "at": WHEN}),
        ("42", {"line": 7, "outcome": "amount_differs", "points": 12.5, "at": WHEN}),
    ]
    gateway.put_settlement_report("3", {"checksum": "s3", "rows": 14, "sealedAt": WHEN}, rows)

    snapshot = services.take(tmp_path / "snap", actor=None, gateway=gateway)

    (held,) = [f for f in snapshot.manifest["files"] if f["holds"] == "settlementReports"]
    assert (held["name"], held["lines"]) == ("settlementReports.jsonl.gz", 3)
    with gzip.open(tmp_path / "snap" / "settlementReports.jsonl.gz") as file:
        assert [json.loads(line)["path"] for line in file] == [
            "settlementReports/3",
            "settlementReports/3/rows/41",
            "settlementReports/3/rows/42",
        ]

    services.restore(tmp_path / "snap", project=target)
    copy = get_gateway(target)
    assert dict(copy.stream_settlement_reports()) == {"3": {"checksum": "s3", "rows": 14, "sealedAt": WHEN}}
    restored = firestore_client(copy.project).collection("settlementReports/3/rows").stream()
    assert {row.id: row.to_dict() for row in restored} == dict(rows)
