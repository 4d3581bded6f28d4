"""Reconciliation through the workers, as users meet it (bench.py `--only workers`).

A full run is requested as the daily schedule does (`request_run` with the
schedule's trigger: a pending run, a task on the broker) and executed by a real `qcluster` (the
ORM broker, or Redis when REDIS_URL is set): one task lists the wallets and
cuts chunks, each chunk is a task of its own, and the last one seals the
report. Timed from the request to the sealed report, against the inline run
(`run_inline`, as `manage.py reconcile` does) of the same wallets in the same
bench run: within 1.25x with 2 workers. Shown beside it, not judged: 1 worker
(what a second worker machine adds), and the peak memory of the busiest worker
process at both sizes (flat in the number of wallets: a worker holds a chunk,
never the run).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

from burst import start_cluster, stop

TARGET_VS_INLINE = 1.25
REQUEST_CHILD = """
import json, time
from reconciliation.models import ReconciliationRun
from reconciliation import services
from reconciliation.models import RunTrigger
started = time.perf_counter()
run_id = services.request_run(actor=None, trigger=RunTrigger.SCHEDULE).pk
while True:
    run = ReconciliationRun.objects.get(pk=run_id)
    if run.status != "pending" and run.status != "running":
        break
    time.sleep(0.02)
seconds = time.perf_counter() - started
print(json.dumps({"wallets": run.wallets_checked, "seconds": seconds, "status": run.status,
                  "checksum": run.checksum, "chunks": run.chunks_total}))
"""


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (the cluster's monitor, pusher and workers)."""
    found, frontier = list[int](), [pid]
    while frontier:
        parent = frontier.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found.extend(int(c) for c in children)
        frontier.extend(int(c) for c in children)
    return found


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM), in MB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def through_workers(env: dict, db: Path, project: str, workers: int, root: Path) -> dict:
    """One full run requested as the schedule does, executed by a fresh cluster
    that is up and idle before the request (as in production)."""
    run_env = {
        **env,
        "DATABASE_URL": f"sqlite:///{db}",
        "GOOGLE_CLOUD_PROJECT": project,
        "Q_WORKERS": str(workers),
        "Q_CLUSTER_NAME": f"bench-workers-{uuid.uuid4().hex[:8]}",
        "LOG_LEVEL": "WARNING",
    }
    cluster = start_cluster(run_env)
    try:
        time.sleep(3)  # the cluster's processes started and polling
        child = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", REQUEST_CHILD],
            cwd=root,
            env=run_env,
            check=True,
            capture_output=True,
            text=True,
        )

        result = json.loads(child.stdout.strip().splitlines()[-1])
        result["worker_peak_rss_mb"] = max((peak_rss_mb(p) for p in descendants(cluster.pid)), default=0.0)
    finally:
        stop(cluster)
    result["broker"] = "redis" if env.get("REDIS_URL") else "orm"
    result["workers"] = workers
    return result


def report_workers(figures: dict[int, dict]) -> bool:
    """figures: {wallets: {"inline": [...], "workers2": [...], "workers1": [...]}}"""
    ok = True
    broker = next(iter(figures.values()))["workers2"][0]["broker"]
    print(f"\nreconcile through the workers (a real qcluster, the {broker} broker), request to sealed report")
    for size, runs in figures.items():
        inline = min(r["seconds"] for r in runs["inline"])
        two = min(r["seconds"] for r in runs["workers2"])
        one = min(r["seconds"] for r in runs["workers1"])
        print(f"\n  {size} wallets")
        print(f"    inline               {size / inline:8.0f} wallets/s   ({inline:.2f} s)")
        print(f"    2 workers            {size / two:8.0f} wallets/s   ({two:.2f} s)")
        print(f"    1 worker             {size / one:8.0f} wallets/s   ({one:.2f} s; shown, not judged)")
        ratio = two / inline
        verdict = "ok" if ratio <= TARGET_VS_INLINE else "MISSED"
        print(f"    2 workers / inline   {ratio:8.2f}x    target <= {TARGET_VS_INLINE}x  {verdict}")
        ok &= ratio <= TARGET_VS_INLINE
        memory = max(r["worker_peak_rss_mb"] for r in runs["workers2"])
        print(f"    busiest worker       {memory:8.0f} MB peak")
    sizes = sorted(figures)
    small = max(r["worker_peak_rss_mb"] for r in figures[sizes[0]]["workers2"])
    large = max(r["worker_peak_rss_mb"] for r in figures[sizes[-1]]["workers2"])
    print(
        f"\n  worker memory {small:.0f} MB at {sizes[0]} wallets, "
        f"{large:.0f} MB at {sizes[-1]}: {large / small:.2f}x (shown, not judged)"
    )
    return ok


# -- one run, inline and split over two machines -----------------------------------

HOSTS_CHUNK_SIZE = 500  # wallets a chunk, on both hosts and inline


def measure_hosts(logs: Path, *, wallets: int, repeat: int, database_url: str, redis_url: str) -> dict:
    """The same full run, inline on host A (`manage.py reconcile`, one process) and
    split over the workers of hosts A and B of tests/hosts (asked for on A's
    admin), in turns, each timed from its request to its sealed report (the
    run's created_at to finished_at, on the database's records); whether the two
    found exactly the same (tests/hosts' own check: violations, deltas, totals,
    the report to the byte but for what identifies the run). {"refused": why}
    when the hosts cannot be made here (root, PostgreSQL and Redis needed)."""
    # why: tests.hosts.site reads the product's models at import, which needs
    # the Django set-up the bench's parent does first.
    from devtools.emulator import EmulatorUnavailable
    from tests.hosts.site import SEEDED, HostsUnavailable, running_site

    found: dict = {"wallets": wallets, "chunk_size": HOSTS_CHUNK_SIZE, "split": [], "inline": []}
    try:
        with running_site(
            logs,
            seeded={**SEEDED, "count": wallets},
            database_url=database_url,
            redis_url=redis_url,
            RECONCILE_CHUNK_SIZE=str(HOSTS_CHUNK_SIZE),
        ) as hosts:
            admin = hosts.admin()
            for _ in range(repeat):
                run_id = hosts.request_run(admin)
                split = hosts.finished(run_id, timeout=900)
                try:
                    ours, theirs = hosts.same_answer_inline(run_id)
                    identical, why = True, ""
                except AssertionError as exc:
                    ours, identical, why = hosts.reports(run_id)[run_id], False, str(exc)[:500]
                    theirs = None
                inline = hosts.run_row(theirs["header"]["run_id"]) if theirs else None
                found["split"].append(
                    {
                        "seconds": (split["finished_at"] - split["created_at"]).total_seconds(),
                        "status": split["status"],
                        "checked_by": ours["checked_by"],
                        "violations": ours["header"]["violations_count"],
                        "wallets": ours["header"]["wallets_checked"],
                        "identical": identical,
                        "why": why,
                    }
                )
                if inline is not None:
                    found["inline"].append((inline["finished_at"] - inline["created_at"]).total_seconds())
    except (HostsUnavailable, EmulatorUnavailable) as exc:
        return {"refused": str(exc)}
    return found


def report_hosts(found: dict) -> bool:
    """Judged: the findings identical in every pair. Shown: the times."""
    print("\none run inline on host A vs split over the workers of hosts A and B (tests/hosts)")
    if "refused" in found:
        print(f"  not measured: {found['refused']}")
        return True
    split, inline = found["split"], found["inline"]
    identical = bool(split) and all(r["identical"] and r["status"] == "completed" for r in split)
    best_split = min(r["seconds"] for r in split)
    best_inline = min(inline) if inline else float("nan")
    shares = ", ".join(f"{host}: {n}" for host, n in sorted(split[-1]["checked_by"].items()))
    size, chunk = found["wallets"], found["chunk_size"]
    print(f"  {size} wallets, chunks of {chunk}, 2 workers a host, best of {len(split)}")
    print(f"    inline on A          {best_inline:8.2f} s")
    print(f"    split over A and B   {best_split:8.2f} s   (chunks counted: {shares})")
    ratio = best_split / best_inline
    print(
        f"    split / inline       {ratio:8.2f}x   (shown, not judged: the hosts share this machine's cores)"
    )
    last = split[-1]
    print(
        f"    findings identical   {'yes' if identical else 'NO':>8}    "
        f"({last['wallets']} wallets, {last['violations']} violations)   {'ok' if identical else 'MISSED'}"
    )
    for r in split:
        if not r["identical"]:
            print(f"      {r['why']}")
    return identical
