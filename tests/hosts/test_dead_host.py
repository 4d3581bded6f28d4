"""A machine dies holding work: every process of host B is killed (SIGKILL) while
it runs a reconciliation's chunks and a snapshot, drains a webhook burst, or
replays stored deliveries. With the Redis broker, what B's workers held, and the
tasks its cluster had fetched ahead, are gone with it; the work itself is in the
database under leases, and host A's own sweeps hand it to A's workers once the
leases lapse. Each piece ends once: the run counts each chunk once and finds what
one process finds, the snapshot verifies, each delivery is applied once and every
wallet is exact, and nothing is left pending.

To make B take the work, host A's cluster stops taking tasks from the broker
while the work is asked for (on A's admin, webhook and job API) and until B is
killed (its pusher is paused; its guard, which runs the schedules, never
stops). B comes back afterwards as a fresh machine."""

import json
import threading
import time

from tests.helpers import event_line

CHUNK_SIZE = 100  # the hosts' (tests/hosts/site.py)


def b_holds_run_and_snapshot(hosts, run_id: int, snapshot_id: int) -> dict | None:
    """What host B holds once it is mid-run (a chunk counted, one in hand) and
    mid-snapshot; None before."""
    snapshot = hosts.sql("SELECT status, worker FROM snapshots_snapshot WHERE id = %s", snapshot_id)[0]
    chunks = hosts.sql(
        "SELECT count(*) FILTER (WHERE done) AS counted,"
        " count(*) FILTER (WHERE NOT done AND lease_until > now()) AS in_hand"
        " FROM reconciliation_reconciliationchunk WHERE run_id = %s AND worker LIKE 'hostb:%%'",
        run_id,
    )[0]
    taking = snapshot["status"] == "running" and snapshot["worker"].startswith("hostb:")
    if taking and chunks["counted"] and chunks["in_hand"]:
        return {"snapshot": snapshot["worker"], **chunks}
    return None


def test_host_b_killed_mid_run_and_mid_snapshot(hosts):
    hosts.workers()
    hosts.a.pause_taking_tasks()
    admin = hosts.admin()
    snapshot_id = hosts.request_snapshot(admin)
    run_id = hosts.request_run(admin)
    held = hosts.wait(
        "host B mid-run and mid-snapshot", lambda: b_holds_run_and_snapshot(hosts, run_id, snapshot_id), 60
    )

    killed = hosts.kill_b()
    run = hosts.finished(run_id, timeout=150)
    recovered = time.monotonic() - killed
    snapshot = hosts.wait(
        "the snapshot completed on host A",
        lambda: (
            (row := hosts.sql("SELECT * FROM snapshots_snapshot WHERE id = %s", snapshot_id)[0])["status"]
            in ("completed", "failed")
            and row
        ),
        150,
        every=0.2,
    )
    hosts.workers()

    assert run["status"] == "completed", f"{run['error']}\n{hosts.log_tails()}"
    ours, _ = hosts.same_answer_inline(run_id)
    wallets = ours["header"]["wallets_checked"]
    chunks = -(-wallets // CHUNK_SIZE)
    assert wallets >= hosts.seeded
    assert (run["chunks_total"], run["chunks_done"]) == (chunks, chunks)
    assert set(ours["checked_by"]) == {"hosta", "hostb"}, (ours["checked_by"], held)
    assert sum(ours["checked_by"].values()) == chunks
    assert ours["checked_by"]["hostb"] >= held["counted"]
    assert (snapshot["status"], snapshot["verification"], snapshot["wallets"]) == (
        "completed",
        "intact",
        wallets,
    ), snapshot["error"]
    assert snapshot["worker"].startswith("hosta:")
    assert hosts.unfinished_work() == {}
    print(f"run and snapshot recovered {recovered:.1f} s after host B was killed; B held {held}")


class Burst(threading.Thread):
    """The payment provider sending deliveries to host A, one after another."""

    def __init__(self, hosts, lines: list[str], per_second: float):
        super().__init__(name="burst", daemon=True)
        self.hosts, self.lines, self.pause = hosts, lines, 1 / per_second
        self.answers: list[int] = []

    def run(self):
        for line in self.lines:
            self.answers.append(self.hosts.deliver(line.encode()))
            time.sleep(self.pause)


def payments(prefix: str, count: int, wallets: list[str]) -> tuple[list[str], dict[str, int]]:
    """`count` payment events over `wallets`, and the points each wallet must end with."""
    lines, owed = [], dict.fromkeys(wallets, 0)
    for n in range(count):
        user, points = wallets[n % len(wallets)], n % 50 + 1
        lines.append(event_line(f"evt_{prefix}_{n}", user=user, payment=f"pay_{prefix}_{n}", points=points))
        owed[user] += points
    return lines, owed


def assert_exact(hosts, owed: dict[str, int], *, payments_each: dict[str, int]) -> None:
    found = hosts.wallets(sorted(owed))
    wrong = {
        uid: found[uid]
        for uid in owed
        if found[uid]["points"] != owed[uid]
        or sum(found[uid]["entries"].values()) != owed[uid]
        or len(found[uid]["entries"]) != payments_each[uid]
    }
    assert wrong == {}


def delivery_statuses(hosts, prefix: str) -> dict[str, int]:
    rows = hosts.sql(
        "SELECT status, count(*) AS n FROM backfill_providereventdelivery WHERE event_id LIKE %s GROUP BY 1",
        f"evt_{prefix}_%",
    )
    return {row["status"]: row["n"] for row in rows}


def test_host_b_killed_mid_burst_while_draining_webhooks(hosts):
    wallets = [f"burst-{n:02d}" for n in range(40)]
    lines, owed = payments("burst", 600, wallets)
    hosts.open_wallets(wallets)
    hosts.workers()
    hosts.a.pause_taking_tasks()
    burst = Burst(hosts, lines, per_second=60)
    burst.start()
    hosts.wait(
        "host B draining the burst",
        lambda: (
            delivery_statuses(hosts, "burst").get("applied", 0) >= 100
            and hosts.sql("SELECT lease FROM backfill_webhookdrain WHERE id = 1")[0]["lease"]
            and burst.is_alive()
        ),
        60,
    )

    killed = hosts.kill_b()
    burst.join(timeout=60)
    hosts.wait(
        "every delivery of the burst applied",
        lambda: delivery_statuses(hosts, "burst") == {"applied": len(lines)},
        150,
        every=0.2,
    )
    recovered = time.monotonic() - killed
    hosts.workers()

    assert burst.answers == [202] * len(lines)
    assert_exact(hosts, owed, payments_each={uid: len(lines) // len(wallets) for uid in wallets})
    assert hosts.unfinished_work() == {}
    print(f"the drain recovered {recovered:.1f} s after host B was killed")


def test_host_b_killed_mid_replay_of_stored_deliveries(hosts):
    # Payments for wallets the points app had not made yet: quarantined, then the
    # wallets appear and the scheduler asks for a replay of the quarantined ones.
    wallets = [f"late-{n:02d}" for n in range(30)]
    lines, owed = payments("late", 300, wallets)
    hosts.workers()
    for line in lines:
        assert hosts.deliver(line.encode()) == 202
    hosts.wait(
        "every late payment quarantined (no wallet yet)",
        lambda: delivery_statuses(hosts, "late") == {"quarantined": len(lines)},
        60,
        every=0.2,
    )
    hosts.open_wallets(wallets)
    hosts.a.pause_taking_tasks()
    job = hosts.job("backfill", {"include_quarantined": True})
    migration = job["migration_id"]

    def row():
        return hosts.sql("SELECT * FROM backfill_datamigration WHERE id = %s", migration)[0]

    held = hosts.wait(
        "host B mid-replay",
        lambda: (r := row())["status"] == "running" and 30 <= r["processed"] < 300 and r,
        60,
    )
    killed = hosts.kill_b()
    done = hosts.wait(
        "the replay completed on host A", lambda: (r := row())["status"] == "completed" and r, 150, every=0.2
    )
    recovered = time.monotonic() - killed
    hosts.workers()

    assert (done["total"], done["processed"], done["applied"]) == (300, 300, 300), json.dumps(
        done, default=str
    )
    assert (done["duplicate"], done["failed"], done["quarantined"]) == (0, 0, 0)
    assert delivery_statuses(hosts, "late") == {"applied": len(lines)}
    assert_exact(hosts, owed, payments_each={uid: len(lines) // len(wallets) for uid in wallets})
    assert hosts.unfinished_work() == {}
    print(f"the replay recovered {recovered:.1f} s after host B was killed at {held['processed']} of 300")
