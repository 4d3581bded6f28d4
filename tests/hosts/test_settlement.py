"""A settlement statement uploaded on one machine and matched on another, and
matched again on the first when the other dies mid-run.

Ops upload PayNow's statement on host A's admin (a real multipart upload to A's
gunicorn); it is kept in the shared storage (Cloud Storage, the emulator on
host C), and host B's worker reads it from there and matches it while A's
cluster takes no tasks. The same file uploaded again, B is killed (SIGKILL,
every process) mid-run: with the Redis broker B's task is gone, and A's sweep
hands the run back once B's lease lapses; A's worker reads the file from the
bucket and matches it from the first row. Both runs find exactly what the
command finds inline on A from the same file: the same rows with the same
outcomes, counts and totals, each row stored once, a checksum that differs
only by what identifies the run."""

import csv
import hashlib
import io
import json
import time
from datetime import datetime, timedelta

from demo.wallets import demo_wallets
from revassure.sealing.canonical import line
from settlement.statement import COLUMNS
from tests.hosts.site import SEEDED

# What identifies a settlement run rather than what it found (settlement.reports.header).
IDENTITY = (
    "run_id",
    "trigger",
    "requested_by",
    "source",
    "repeat_of",
    "started_at",
    "finished_at",
    "chain_seq",
    "previous_checksum",
)
PAYMENTS = 3000  # of the seeded purchases the statement settles: three chunks and a bit


def statement() -> tuple[bytes, dict[str, int]]:
    """A statement over the seeded wallets' purchases, with breaks of most kinds,
    settled within one day of the seeded history (the ledger's other purchases
    of that day are missing at the provider); the rows of each kind written."""
    purchases = [
        (uid, fields["paymentId"], fields["amount"], fields["createdAt"])
        for uid, _, ledger in demo_wallets(**SEEDED)
        for fields in ledger.values()
        if fields.get("type") == "purchase" and isinstance(fields.get("amount"), int)
    ]
    day = sorted(created for *_, created in purchases)[len(purchases) // 2].replace(
        hour=0, minute=0, second=0
    )
    noon, last = day + timedelta(hours=12), day + timedelta(days=1) - timedelta(seconds=1)
    rows, made = [], dict.fromkeys(["matched", "points_mismatch", "not_settled", "unreversed", "missing"], 0)

    def row(kind, payment, user, points, *, reference="", status="settled", when: datetime | None = noon):
        settled = when.isoformat() if status == "settled" and when else ""
        rows.append([kind, payment, reference, user, points, f"{points / 10:.2f}", "EUR", status, settled])

    for n, (uid, payment, points, _) in enumerate(purchases[:PAYMENTS]):
        when = day if n == 0 else last if n == PAYMENTS - 1 else noon
        if n % 97 == 5:
            row("payment", payment, uid, points + 25, when=when)
            made["points_mismatch"] += 1
        elif n % 89 == 7:
            row("payment", payment, uid, points, status="pending")
            made["not_settled"] += 1
        else:
            row("payment", payment, uid, points, when=when)
            made["matched"] += 1
    for n, (uid, payment, points, _) in enumerate(purchases[:20]):  # refunded, never reversed
        row("refund", payment, uid, min(points, 10), reference=f"re_hosts_{n}")
        made["unreversed"] += 1
    for n in range(10):  # settled, never credited
        row("payment", f"pi_hosts_lost_{n}", purchases[n][0], 100)
        made["missing"] += 1
    rows.extend(list(r) for r in rows[10:20])  # listed twice
    rows.append(["payment", "pi_hosts_bad", "", purchases[0][0], "１２０", "12.00", "EUR", "settled", ""])
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return out.getvalue().encode(), {**made, "rows": len(rows)}


def b_mid_settlement(hosts, run_id: int) -> dict | None:
    """The run, once host B's worker holds it with a chunk of rows stored; None before."""
    run = hosts.settlement_run(run_id)
    if run["status"] == "running" and run["worker"].startswith("hostb:") and run["rows"] >= 1000:
        return run
    return None


def assert_same_findings(ours: dict, inline: dict) -> None:
    """Two reports of one statement found the same: every row's record in the
    order stored, the counts, totals and period; given the inline run's identity,
    our report is the inline run's to the byte."""
    assert ours["rows"] == inline["rows"]
    assert ours["rows_sha256"] == inline["rows_sha256"]
    found = {key: value for key, value in ours["header"].items() if key not in IDENTITY}
    assert found == {key: value for key, value in inline["header"].items() if key not in IDENTITY}
    as_inline = {**ours["header"], **{key: inline["header"][key] for key in IDENTITY}}
    rehashed = hashlib.sha256(line(as_inline) + ours["rows_sha256"].encode() + b"\n").hexdigest()
    assert rehashed == inline["checksum"] != ours["checksum"]


def test_a_statement_uploaded_on_a_is_matched_on_b_and_on_a_when_b_dies_mid_run(hosts):
    body, made = statement()
    hosts.workers()
    hosts.a.pause_taking_tasks()
    admin = hosts.admin()

    on_b = hosts.upload_statement(admin, body)
    matched_on_b = hosts.settlement_finished(on_b, timeout=120)
    assert matched_on_b["status"] == "completed", f"{matched_on_b['error']}\n{hosts.log_tails()}"
    assert matched_on_b["worker"].startswith("hostb:") and matched_on_b["attempts"] == 1

    taken_over = hosts.upload_statement(admin, body)
    held = hosts.wait("host B mid-settlement", lambda: b_mid_settlement(hosts, taken_over), 60, every=0.02)
    killed = hosts.kill_b()
    recovered = hosts.settlement_finished(taken_over, timeout=150)
    took = time.monotonic() - killed
    hosts.workers()

    assert recovered["status"] == "completed", f"{recovered['error']}\n{hosts.log_tails()}"
    assert recovered["worker"].startswith("hosta:") and recovered["attempts"] == 2
    hosts.a.put_file("/tmp/paynow.csv", body)
    inline = json.loads(hosts.a.manage("reconcile_settlement", "/tmp/paynow.csv", "--json"))
    reports = hosts.settlement_reports(on_b, taken_over, inline["run_id"])
    for run_id in (on_b, taken_over):
        assert_same_findings(reports[run_id], reports[inline["run_id"]])
    run = reports[taken_over]["header"]
    assert (
        run["rows"] == made["rows"]
        and len({r["line"] for r in reports[taken_over]["rows"]} - {None}) == run["rows"]
    )
    assert len(reports[taken_over]["rows"]) == run["rows"] + run["missing_at_provider"]  # each row once
    assert (
        run["matched"],
        run["points_mismatch"],
        run["not_settled"],
        run["unreversed"],
        run["missing_in_ledger"],
    ) == (
        made["matched"],
        made["points_mismatch"],
        made["not_settled"],
        made["unreversed"],
        made["missing"],
    )
    assert (run["duplicate_in_statement"], run["malformed_rows"]) == (10, 1)
    assert run["missing_at_provider"] > 0  # the day's other purchases
    page = admin.get(f"/admin/settlement/settlementrun/{taken_over}/change/")
    assert recovered["worker"] in page and "worker 2: earlier ones were lost" in page
    assert hosts.unfinished_work() == {}
    print(
        f"settlement recovered {took:.1f} s after host B was killed at {held['rows']} of {made['rows']} rows"
    )
