"""The real-time watcher as the bench meets it: `manage.py watch_ledger --json`
in a process of its own, read from outside (its JSON lines, its CPU from
/proc, its checks and commit-to-check histogram through its
PROMETHEUS_MULTIPROC_DIR); and the watcher beside the webhook burst
(bench.py `--only burst`): no false positive, its lag, then a real drift found.
Used by bench/realtime.py and bench.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LATENCY = "revassure_watcher_detection_latency_seconds"
DRIFT_POINTS = 7  # a drift: a wallet's points set to this, no ledger entry
TARGET_P99 = 1.0  # seconds


class Watcher:
    """`manage.py watch_ledger --json` over `project` and the database `db`, in a
    process group of its own; its JSON lines (drifts) and log lines collected."""

    def __init__(self, env: dict, db: Path, project: str, metrics_dir: Path):
        metrics_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_dir = metrics_dir
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "watch_ledger", "--json"],
            cwd=ROOT,
            env={
                **env,
                "DATABASE_URL": f"sqlite:///{db}",
                "GOOGLE_CLOUD_PROJECT": project,
                "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                "LOG_LEVEL": "INFO",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.drifts: list[dict] = []
        self.logs: deque[str] = deque(maxlen=200)
        self.listening = threading.Event()
        threading.Thread(target=self._read_drifts, daemon=True).start()
        threading.Thread(target=self._read_logs, daemon=True).start()

    def _read_drifts(self) -> None:
        assert self.process.stdout is not None  # started with stdout=PIPE
        for line in self.process.stdout:
            self.drifts.append(json.loads(line))

    def _read_logs(self) -> None:
        assert self.process.stderr is not None  # started with stderr=PIPE
        for line in self.process.stderr:
            self.logs.append(line)
            if "watcher: listening" in line:
                self.listening.set()

    def wait_listening(self, timeout: float = 120.0) -> None:
        if not self.listening.wait(timeout):
            self.stop()
            raise SystemExit(
                f"bench: the watcher did not listen within {timeout:.0f} s:\n" + "".join(self.logs)
            )

    def cpu_seconds(self) -> float:
        from devtools.emulator import process_cpu_seconds  # why: bench.py sets up Django first

        return process_cpu_seconds(self.process.pid)

    def metrics(self) -> dict:
        """Wallets checked so far and the commit-to-check histogram ({le: cumulative count})."""
        # why: PROMETHEUS_MULTIPROC_DIR is the watcher's, read here by path only
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.metrics_dir))
        figures: dict = {"checks": 0.0, "buckets": {}}
        for metric in registry.collect():
            for sample in metric.samples:
                if sample.name == "revassure_watcher_checks_total":
                    figures["checks"] += sample.value
                elif sample.name == f"{LATENCY}_bucket":
                    le = float(sample.labels["le"])
                    figures["buckets"][le] = figures["buckets"].get(le, 0.0) + sample.value
        return figures

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


def latency(drift: dict) -> float:
    return (
        datetime.fromisoformat(drift["detected_at"]) - datetime.fromisoformat(drift["write_time"])
    ).total_seconds()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def lag_quantile(before: dict, after: dict, q: float) -> float:
    """The histogram's bucket bound under which a share q of the checks between
    two readings fell (inf: beyond the last bucket)."""
    bounds = sorted(after["buckets"])
    counts = [after["buckets"][le] - before["buckets"].get(le, 0.0) for le in bounds]
    total = counts[-1] if counts else 0.0
    for le, count in zip(bounds, counts, strict=True):
        if total and count >= q * total:
            return le
    return float("nan")


def watch_burst(env: dict, db: Path, project: str, work: Path, burst) -> dict:
    """The watcher beside the webhook burst `burst()` (bench/burst.py's batched
    burst over `project`): what it checked and how late, the drifts it reported
    (none is real: each is a false positive), then a drift written once the
    burst is applied, which it must find."""
    from revassure.firestore import FirestoreGateway  # why: bench.py sets up Django first

    watcher = Watcher(env, db, project, work / "metrics")
    try:
        watcher.wait_listening()
        before, cpu = watcher.metrics(), watcher.cpu_seconds()
        result = burst()
        settled = time.monotonic()
        checks = watcher.metrics()["checks"]
        while time.monotonic() - settled < 2.0:  # until no check for two seconds
            time.sleep(0.1)
            if watcher.metrics()["checks"] != checks:
                checks, settled = watcher.metrics()["checks"], time.monotonic()
        after, cpu = watcher.metrics(), watcher.cpu_seconds() - cpu
        false_positives = list(watcher.drifts)
        FirestoreGateway(project).write_wallets([("sentinel", DRIFT_POINTS, {})])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(d["uid"] == "sentinel" for d in watcher.drifts):
            time.sleep(0.05)
        sentinel = [latency(d) for d in watcher.drifts if d["uid"] == "sentinel"]
    finally:
        watcher.stop()
    return {
        "burst": result,
        "checks": after["checks"] - before["checks"],
        "lag_p50": lag_quantile(before, after, 0.5),
        "lag_p99": lag_quantile(before, after, 0.99),
        "false_positives": false_positives,
        "sentinel": sentinel[0] if sentinel else None,
        "cpu_seconds": cpu,
    }


def report_burst_watch(watched: dict, events: int) -> bool:
    burst = watched["burst"]
    found = watched["sentinel"]
    ok = not watched["false_positives"] and found is not None and found < TARGET_P99
    print(
        f"    with the watcher     {events / burst['end_to_end_seconds']:8.0f} events/s end to end "
        f"(one more batched burst, the watcher beside it: shown, not judged)"
    )
    print(
        f"    watcher              checked {watched['checks']:.0f} wallets, commit to check "
        f"p50 <= {watched['lag_p50']:g} s, p99 <= {watched['lag_p99']:g} s; "
        f"{watched['cpu_seconds'] * 1000 / events:.2f} ms CPU per event"
    )
    print(
        f"    false positives      {len(watched['false_positives'])} (target 0); a drift written after "
        "the burst found "
        + (f"{found:.2f} s later" if found is not None else "NOT within 30 s")
        + f" (target < {TARGET_P99:g} s)   {'ok' if ok else 'MISSED'}"
    )
    return ok
