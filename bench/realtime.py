"""Real-time detection, measured (bench.py `--only realtime`; issue 23, docs/realtime.md).

On each emulator (ours, then Google's), a fresh project of PAYMENT_WALLETS
payment wallets and the wallets kept for drifts, all at 0 points, and the
real watcher listening to it: `manage.py watch_ledger --json`, a process of
its own with the production debounce and a database of its own. Then steps
of STEP_SECONDS at rising rates, each write at its slot of a fixed schedule,
from WRITERS threads of this process:

- a payment through the webhook drain's path (`apply_payments`): its ledger
  entry, the wallet's increment and the payment's identity marker in one
  commit (each thread owns its wallets, as one drain does);
- among them, evenly, DRIFTS a step (2 a second on ours, 1 on Google's),
  whatever the rate: a drift wallet's points set without a ledger entry
  (`write_wallets` with no entries, one commit).

Per step: the writes per second reached; the detection latency of each drift
(p50, p99): its commit time (`write_time` of the watcher's JSON line) to its
break recorded (`detected_at`); drifts missed (none reported within GRACE
seconds of the step's last write); false positives (any other wallet
reported); the watcher's checks per second and the commit-to-check lag of
every wallet checked (p99, from its latency histogram through
PROMETHEUS_MULTIPROC_DIR); the watcher's CPU per write (/proc/<pid>/stat),
and the CPU share of watcher, emulator and writers, which say why it falls
behind. Targets: p99 under 1 s at TARGET_RATE (200 writes/s on ours, 20 on
Google's), no drift missed, no false positive. The rate rises until the
watcher falls behind (p99 or check lag over 1 s, or a drift missed), or the
writers cannot keep the schedule; at the end every drift must have been
reported once.

The watcher's process is read from outside by bench/watching.py.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from pathlib import Path

from burst import own_cpu_seconds
from watching import DRIFT_POINTS, TARGET_P99, Watcher, lag_quantile, latency, quantile

RATES = {"npm": (200, 400, 800, 1600), "google": (20, 50, 100, 200)}
TARGET_RATE = {"npm": 200, "google": 20}
STEP_SECONDS = 10
WRITERS = 8
# Payment wallets: fewer on Google's emulator, which sends a listener every
# document it covers again after each commit (see docs/realtime.md).
PAYMENT_WALLETS = {"npm": 1000, "google": 100}
# Drifts a step, evenly among the writes: a drift is recorded by a run of its
# own, so their rate is kept apart from the rate of writes that rises.
DRIFTS = {"npm": 20, "google": 10}
GRACE = 15.0  # seconds after a step's last write for its drifts to be reported
FINAL_GRACE = 60.0  # seconds at the end for every drift still unreported
NAMES = {"npm": "our emulator (npm launcher)", "google": "Google's emulator"}


def payment(n: int, uid: str):
    from backfill.events import parse  # why: bench.py sets up Django first

    return parse(
        json.dumps(
            {
                "id": f"evt_rt_{n}",
                "type": "payment.succeeded",
                "created": "2026-11-20T10:00:00Z",
                "data": {"payment_id": f"pay_rt_{n}", "user_id": uid, "points": 10},
            }
        )
    )


def write_step(gateway, rate: int, drifts: dict[int, str], payments, wallets: int) -> dict:
    """Write rate * STEP_SECONDS writes on schedule (drifts at their slots); the
    wall time it took and how the writers kept up."""
    from backfill.rules import decide  # why: bench.py sets up Django first

    total = round(rate * STEP_SECONDS)
    start = time.monotonic() + 0.2
    late, ends, refused = [0.0] * WRITERS, [start] * WRITERS, []

    def writer(k: int) -> None:
        known: dict = {}
        mine = [f"p{n:04d}" for n in range(k, wallets, WRITERS)]  # each wallet has one writer
        for j, slot in enumerate(range(k, total, WRITERS)):
            wait = start + slot / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                late[k] = max(late[k], -wait)
            if slot in drifts:
                gateway.write_wallets([(drifts[slot], DRIFT_POINTS, {})])
                continue
            n = next(payments)
            outcome = gateway.apply_payments(
                [(payment(n, mine[j % len(mine)]), n)], decide=decide, known=known
            )
            if outcome[n].status != "applied":
                refused.append(outcome[n])
        ends[k] = time.monotonic()

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = max(ends) - start
    return {"writes": total, "seconds": seconds, "late": max(late), "refused": len(refused), "start": start}


def measure_step(
    gateway, watcher: Watcher, emulator, kind: str, rate: int, drift_uids, payments, injected: set
):
    total = round(rate * STEP_SECONDS)
    count = DRIFTS[kind]
    drifts = {int((k + 0.5) * total / count): next(drift_uids) for k in range(count)}
    injected.update(drifts.values())
    seen = len(watcher.drifts)
    cpu = (watcher.cpu_seconds(), emulator.cpu_seconds(), own_cpu_seconds())
    before = watcher.metrics()
    started = time.monotonic()
    written = write_step(gateway, rate, drifts, payments, PAYMENT_WALLETS[kind])
    # While the writes went on: what each process asked of the machine.
    busy = (watcher.cpu_seconds(), emulator.cpu_seconds(), own_cpu_seconds())
    writing = time.monotonic() - started
    load = os.getloadavg()[0]
    wanted = set(drifts.values())
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline and not wanted <= {d["uid"] for d in watcher.drifts[seen:]}:
        time.sleep(0.05)
    # The checks settle: the counter unchanged for a second (or the grace over).
    checks, changed = watcher.metrics()["checks"], time.monotonic()
    while time.monotonic() - changed < 1.0 and time.monotonic() < deadline:
        time.sleep(0.1)
        now = watcher.metrics()["checks"]
        if now != checks:
            checks, changed = now, time.monotonic()
    span = changed - written["start"]
    after = watcher.metrics()
    cpu_after = (watcher.cpu_seconds(), emulator.cpu_seconds(), own_cpu_seconds())
    lines = watcher.drifts[seen:]
    found = [d for d in lines if d["uid"] in wanted]
    latencies = [latency(d) for d in found]
    return {
        "rate": rate,
        "writes": total,
        "reached": total / written["seconds"],
        "late": written["late"],
        "refused": written["refused"],
        "drifts": len(wanted),
        "p50": quantile(latencies, 0.5),
        "p99": quantile(latencies, 0.99),
        "max": max(latencies, default=float("nan")),
        "missed": len(wanted - {d["uid"] for d in found}),
        "false_positives": sum(1 for d in lines if d["uid"] not in injected)
        + (len(found) - len({d["uid"] for d in found})),
        "checks": after["checks"] - before["checks"],
        "checks_per_second": (after["checks"] - before["checks"]) / span,
        "lag_p50": lag_quantile(before, after, 0.5),
        "lag_p99": lag_quantile(before, after, 0.99),
        "span": span,
        "cpu": {  # shares of a core while writing
            name: (a - b) / writing
            for name, a, b in zip(("watcher", "emulator", "writers"), busy, cpu, strict=True)
        },
        "cpu_ms_per_write": (cpu_after[0] - cpu[0]) * 1000 / total,  # the watcher's, writes and drain
        "load": load,
    }


def behind(step: dict) -> bool:
    return not (step["p99"] < TARGET_P99 and step["lag_p99"] <= TARGET_P99 and step["missed"] == 0)


def writer_limited(step: dict) -> bool:
    return step["reached"] < 0.9 * step["rate"]


def measure(kind: str, emulator, env: dict, db: Path, work: Path) -> dict:
    """Every step on one emulator (a fresh one, FIRESTORE_EMULATOR_HOST set), until
    the watcher falls behind or the writers cannot keep up."""
    from revassure.firestore import FirestoreGateway  # why: bench.py sets up Django first

    project = f"realtime-{kind}"
    gateway = FirestoreGateway(project)
    needed = DRIFTS[kind] * len(RATES[kind]) + 1
    gateway.write_wallets(
        [(f"p{n:04d}", 0, {}) for n in range(PAYMENT_WALLETS[kind])]
        + [(f"d{n:05d}", 0, {}) for n in range(needed)]
    )
    load = os.getloadavg()[0]
    drift_uids = (f"d{n:05d}" for n in range(needed))
    payments = itertools.count()
    watcher = Watcher(env, db, project, work / "metrics")
    injected: set[str] = set()
    try:
        started = time.monotonic()
        watcher.wait_listening()
        listening = time.monotonic() - started
        # A first drift, not counted: the watcher's first run (imports, first queries).
        first = next(drift_uids)
        injected.add(first)
        gateway.write_wallets([(first, DRIFT_POINTS, {})])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not watcher.drifts:
            time.sleep(0.05)
        warm_up = latency(watcher.drifts[0]) if watcher.drifts else float("nan")
        steps = []
        for rate in RATES[kind]:
            steps.append(measure_step(gateway, watcher, emulator, kind, rate, drift_uids, payments, injected))
            print(f"measured real-time detection on {kind} at {rate} writes/s", flush=True)
            if behind(steps[-1]) or writer_limited(steps[-1]):
                break
        deadline = time.monotonic() + FINAL_GRACE
        while time.monotonic() < deadline and not injected <= {d["uid"] for d in watcher.drifts}:
            time.sleep(0.1)
        reported = [d["uid"] for d in watcher.drifts]
    finally:
        watcher.stop()
    return {
        "kind": kind,
        "load": load,
        "listening_seconds": listening,
        "warm_up_latency": warm_up,
        "steps": steps,
        "never_reported": len(injected - set(reported)),
        "reported_twice": len(reported) - len(set(reported)),
        "false_positives": sum(1 for uid in reported if uid not in injected),
    }


def report_realtime(results: dict[str, dict]) -> bool:
    ok = True
    print(
        f"\nreal-time detection: `watch_ledger --json` in a process of its own (debounce 0.25 s), "
        f"{WRITERS} writer threads, {STEP_SECONDS} s a step;"
    )
    print(
        "  payments (entry, increment and identity marker in one commit) and, evenly among them, drifts "
        "(a wallet's points set, no entry)"
    )
    for kind, result in results.items():
        print(
            f"\n  on {NAMES[kind]}: {PAYMENT_WALLETS[kind]} payment wallets, {DRIFTS[kind]} drifts a step; "
            f"listening {result['listening_seconds']:.1f} s after start; first drift "
            f"{result['warm_up_latency']:.2f} s, not counted; load average {result['load']:.1f}"
        )
        print(
            "    rate     reached  drifts  p50     p99     missed  false+  checks/s  check lag p99  "
            "CPU/write  CPU while writing: watcher emulator writers"
        )
        for s in result["steps"]:
            lag = f"<= {s['lag_p99']:g} s" if s["lag_p99"] != float("inf") else "> 60 s"
            print(
                f"    {s['rate']:5d}/s  {s['reached']:5.0f}/s  {s['drifts']:6d}  "
                f"{s['p50']:5.2f} s {s['p99']:5.2f} s "
                f"{s['missed']:6d}  {s['false_positives']:6d}  {s['checks_per_second']:8.0f}  {lag:>13}  "
                f"{s['cpu_ms_per_write']:6.2f} ms  {s['cpu']['watcher']:26.0%} {s['cpu']['emulator']:8.0%} "
                f"{s['cpu']['writers']:7.0%}"
                + (f"  ({s['refused']} payments not applied)" if s["refused"] else "")
            )
        target = TARGET_RATE[kind]
        at_target = next((s for s in result["steps"] if s["rate"] == target), None)
        met = at_target is not None and not behind(at_target) and at_target["false_positives"] == 0
        print(
            f"    p99 at {target} writes/s: "
            + (f"{at_target['p99']:.2f} s" if at_target else "not measured")
            + f"   target < {TARGET_P99:g} s, none missed, no false positive   {'ok' if met else 'MISSED'}"
        )
        clean = (
            result["never_reported"] == 0 and result["reported_twice"] == 0 and result["false_positives"] == 0
        )
        print(
            "    every drift reported once, nothing else: "
            + (
                "yes"
                if clean
                else f"NO ({result['never_reported']} never reported, "
                f"{result['reported_twice']} twice, {result['false_positives']} false positives)"
            )
        )
        ok &= met and clean
        print("    " + where_behind(result["steps"]))
        if kind == "google":
            print(
                "    (Google's emulator answers every commit with a RESET and every document a stream "
                "covers, wallets and ledger entries: the watcher reads them all, hence its CPU per write)"
            )
    return ok


def where_behind(steps: list[dict]) -> str:
    last = steps[-1]
    cpu, cores = last["cpu"], len(os.sched_getaffinity(0))
    used = (
        f"ours used {sum(cpu.values()):.0%} of a core on {cores} (watcher {cpu['watcher']:.0%}, "
        f"emulator {cpu['emulator']:.0%}, writers {cpu['writers']:.0%}), load average {last['load']:.1f}"
    )
    if behind(last):
        busiest = max(("watcher", "emulator"), key=lambda name: cpu[name])
        if cpu[busiest] >= 0.85:
            why = f"the {busiest} busy {cpu[busiest]:.0%} of a core"
        elif sum(cpu.values()) >= 0.8 * cores or last["load"] > cores:
            why = "the machine's cores"
        else:
            why = "no process and no core saturated"
        return (
            f"falls behind at {last['rate']} writes/s (p99 {last['p99']:.2f} s, {last['missed']} missed "
            f"within {GRACE:.0f} s): {why}; {used}"
        )
    if writer_limited(last):
        return (
            f"kept up with all the writers reached: {last['reached']:.0f} writes/s of {last['rate']}; {used}"
        )
    return f"kept up at every rate up to {last['rate']} writes/s"
