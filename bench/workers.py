"""Reconciliation through the workers, as users meet it (bench.py `--only workers`).

A full run is requested as the daily schedule does (`scheduled_reconcile`:
a pending run, a task on the broker) and executed by a real `qcluster` (the
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
from reconciliation.tasks import scheduled_reconcile
started = time.perf_counter()
run_id = scheduled_reconcile()
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
