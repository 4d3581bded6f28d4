"""The paths users meet, measured as they run: a webhook burst through the real
server and workers, and a reconciliation requested as the schedule does and
executed by a real qcluster. Called by bench.py (`--only burst`, `--only workers`).

Webhook burst: 5,000 signed deliveries (5 payments each for 1,000 wallets)
sent by 16 concurrent clients (processes), each request on a connection of its
own as a provider sends them, to gunicorn with 2 workers (as the Dockerfile runs it,
with two) while a real `qcluster` (2 workers) applies them. Reported:

- intake: requests answered per second and p50/p99 answer time, against the
  floor of the same server answering a bare 200 view under the same load;
- end to end (first request sent to last delivery applied), batched (the
  drain) against the one-task-per-delivery path (WEBHOOK_APPLY=per_delivery)
  and against the file replay of the same events (bench.py's replay child);
- exactly once: every delivery applied, every wallet at exactly 50 points;
- the CPU each path used per event (server, cluster, emulator and the clients
  sending, all on this machine), and the bound the cores set: every delivery
  answered like the bare view and applied like the file replay (its CPU per
  event, the two summed) on all the cores at once. Targets: end to end at
  least 3/4 of that bound, intake p99 under 3x the bare view's, at least 4x
  the one-task path, and exactly once.

The batched burst and the bare view are measured BURST_REPEAT times in turns;
each figure is the best of its repeats, as elsewhere in the bench.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 16
SERVER_WORKERS = 2
CLUSTER_WORKERS = 2
SECRET = "whsec_bench_only"
BASELINE_EVENTS = 1000  # the one-task-per-delivery baseline's share of the burst
TARGET_VS_PER_DELIVERY = 4.0
TARGET_VS_BOUND = 0.75  # end to end, of what the cores allow (print_cpu's bound)
TARGET_P99_VS_BARE = 3.0
BURST_REPEAT = 2  # batched burst and bare view, in turns


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(env: dict, db: Path, project: str, **extra: str) -> dict:
    return {
        **env,
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "SECRET_KEY": "bench-only-not-secret",
        "DATABASE_URL": f"sqlite:///{db}",
        "GOOGLE_CLOUD_PROJECT": project,
        "PAYNOW_WEBHOOK_SECRETS": SECRET,
        "DJANGO_SETTINGS_MODULE": "bench.bare_settings",
        "Q_WORKERS": str(CLUSTER_WORKERS),
        **extra,
    }


def start_server(env: dict, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "revassure.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(SERVER_WORKERS),
            "--backlog",
            "2048",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status, _ = request(
                port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            if status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.1)
    server.kill()
    raise SystemExit("bench: gunicorn did not answer /healthz within 30 s")


def start_cluster(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tree_cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and its living descendants (Linux /proc)."""
    from devtools.emulator import process_cpu_seconds

    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += process_cpu_seconds(current)
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        pending += [int(child) for child in children]
    return total


def own_cpu_seconds() -> float:
    """This process's CPU time so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def request(port: int, raw: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(raw)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    return int(answer.split(b" ", 2)[1]), answer


def signed_requests(lines: list[str], path: str) -> list[bytes]:
    from backfill.events import sign

    now = int(time.time())
    requests = []
    for line in lines:
        body = line.encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nPayNow-Signature: {sign(body, SECRET, now)}\r\n"
            "Connection: close\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


def send_burst(port: int, requests: list[bytes]) -> dict:
    """Send every request from CLIENTS client processes (client k sends requests
    k, k + CLIENTS, ..., one at a time, each on a connection of its own); answer
    times and statuses. Processes, not threads: as separate senders they never
    wait on each other, and threads sharing one interpreter lock did (the
    server's worker waits for the client to close the connection, so a client
    stalled behind its siblings showed as a slow answer)."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(CLIENTS + 1)
    results = context.Queue()
    clients = [
        context.Process(target=client_process, args=(port, requests[k::CLIENTS], start, results))
        for k in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    start.wait()
    started_wall, started = time.time(), time.monotonic()
    answers = [results.get() for _ in clients]
    for client in clients:
        client.join()
    seconds = max(finished for finished, _, _ in answers) - started
    times = sorted(elapsed for _, _, share in answers for _, elapsed in share)
    statuses = Counter(str(status) for _, _, share in answers for status, _ in share)
    return {
        "requests": len(times),
        "clients_cpu": sum(cpu for _, cpu, _ in answers),  # sending only, not starting the processes
        "started_wall": started_wall,
        "seconds": seconds,
        "p50_ms": times[len(times) // 2] * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
        "statuses": dict(statuses),
    }


def client_process(port: int, share: list[bytes], start, results) -> None:
    """One client: its share of the requests, one after another."""
    answers = []
    start.wait()
    cpu_before = own_cpu_seconds()
    for raw in share:
        began = time.monotonic()
        try:
            status, _ = request(port, raw)
        except OSError:
            status = -1
        answers.append((status, time.monotonic() - began))
    results.put((time.monotonic(), own_cpu_seconds() - cpu_before, answers))


def delivery_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM backfill_providereventdelivery GROUP BY 1"))


def last_applied(db: Path) -> float:
    with sqlite3.connect(db, timeout=30) as conn:
        (value,) = conn.execute("SELECT max(applied_at) FROM backfill_providereventdelivery").fetchone()
    return datetime.fromisoformat(value).timestamp()


def burst_once(env: dict, db: Path, project: str, lines: list[str], *, mode: str, emulator) -> dict:
    """One burst of the events through server and cluster; `mode`: batched or per_delivery."""
    run_env = server_env(env, db, project, WEBHOOK_APPLY=mode, Q_CLUSTER_NAME=f"bench-{mode}-{db.stem}")
    port = free_port()
    server, cluster = start_server(run_env, port), start_cluster(run_env)
    try:
        time.sleep(2)  # the cluster's workers up and polling, as in production
        requests = signed_requests(lines, "/api/webhooks/paynow")
        processes = (server.pid, cluster.pid)
        cpu_before = [tree_cpu_seconds(pid) for pid in processes] + [
            emulator.cpu_seconds(),
            own_cpu_seconds(),
        ]
        sent = send_burst(port, requests)
        deadline = time.monotonic() + 900
        while delivery_counts(db).get("received", 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu_after = [tree_cpu_seconds(pid) for pid in processes] + [emulator.cpu_seconds(), own_cpu_seconds()]
        counts = delivery_counts(db)
        end_to_end = last_applied(db) - sent["started_wall"]
    finally:
        stop(server)
        stop(cluster)
    spent = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
    cpu = dict(zip(("server", "cluster", "emulator", "clients"), spent, strict=True))
    cpu["clients"] += sent["clients_cpu"]  # the parent's own share is its wait for the drain
    return {
        **sent,
        "deliveries": counts,
        "end_to_end_seconds": end_to_end,
        "wallets": wallet_points(project),
        "cpu": cpu,
    }


def bare_once(env: dict, db: Path, project: str, lines: list[str]) -> dict:
    """The same requests, the same server, a view that answers 200 and does nothing."""
    port = free_port()
    server = start_server(server_env(env, db, project), port)
    try:
        requests = signed_requests(lines, "/bench/bare")
        before = tree_cpu_seconds(server.pid), own_cpu_seconds()
        sent = send_burst(port, requests)
        after = tree_cpu_seconds(server.pid), own_cpu_seconds()
        clients = after[1] - before[1] + sent["clients_cpu"]
        return {**sent, "cpu": {"server": after[0] - before[0], "clients": clients}}
    finally:
        stop(server)


def wallet_points(project: str) -> dict[int | None, int]:
    """How many wallets hold each balance (all at 50 when each payment landed once)."""
    from google.cloud import firestore

    balances: dict[int | None, int] = {}
    for doc in firestore.Client(project=project).collection("wallets").stream():
        points = (doc.to_dict() or {}).get("points")  # a streamed document exists: never None
        balances[points] = balances.get(points, 0) + 1
    return balances


def report_burst(results: dict, replays: list[dict], events: int, wallets: int) -> bool:
    """Each figure the best of its repeats; exactly once must hold in every burst."""
    per_delivery = results["per_delivery"][0]
    batched = min(results["batched"], key=lambda r: r["end_to_end_seconds"])
    intake_run = min(results["batched"], key=lambda r: r["seconds"])
    bare = min(results["bare"], key=lambda r: r["seconds"])
    intake_p99 = min(r["p99_ms"] for r in results["batched"])
    bare_p99 = min(r["p99_ms"] for r in results["bare"])
    replay = min(replays, key=lambda r: r["seconds"] / r["events"])
    intake = intake_run["requests"] / intake_run["seconds"]
    e2e = events / batched["end_to_end_seconds"]
    baseline = per_delivery["requests"] / per_delivery["end_to_end_seconds"]
    replayed = replay["events"] / replay["seconds"]
    repeats = f"best of {len(results['batched'])}"
    print(f"\nwebhook burst: {events} signed deliveries for {wallets} wallets, {CLIENTS} clients,")
    print(f"  gunicorn with {SERVER_WORKERS} workers, a qcluster with {CLUSTER_WORKERS} workers ({repeats})")
    print(
        f"    intake               {intake:8.0f} requests/s   p50 {intake_run['p50_ms']:.1f} ms, "
        f"p99 {intake_p99:.1f} ms   answers {[r['statuses'] for r in results['batched']]}"
    )
    print(
        f"    bare 200 view        {bare['requests'] / bare['seconds']:8.0f} requests/s   "
        f"p50 {bare['p50_ms']:.1f} ms, p99 {bare_p99:.1f} ms   (same server, same load)"
    )
    print(f"    end to end, batched  {e2e:8.0f} events/s   (first request sent to last delivery applied)")
    print(
        f"    end to end, one task {baseline:8.0f} events/s   (a task per delivery, the path before, "
        f"over the first {per_delivery['requests']}; "
        f"intake {per_delivery['requests'] / per_delivery['seconds']:.0f}/s)"
    )
    print(f"    file replay          {replayed:8.0f} events/s   (the same events from a file)")
    vs_baseline, vs_replay = e2e / baseline, replayed / e2e
    p99_ratio = intake_p99 / bare_p99
    bound = cores_bound(bare=bare, replay=replay)
    exact = all(
        run["deliveries"] == {"applied": events} and run["wallets"] == {events * 10 // wallets: wallets}
        for run in results["batched"]
    )
    exact &= per_delivery["deliveries"] == {"applied": per_delivery["requests"]}
    exact &= (
        sum(points * count for points, count in per_delivery["wallets"].items())
        == per_delivery["requests"] * 10
    )
    print(f"    file replay / batched{vs_replay:8.2f}x    (shown: the file replay needs no answers)")
    print_cpu(batched, bare, replay, events, bound)
    checks = [
        (
            "batched / one task",
            vs_baseline,
            f">= {TARGET_VS_PER_DELIVERY}x",
            vs_baseline >= TARGET_VS_PER_DELIVERY,
        ),
        (
            f"batched / {len(os.sched_getaffinity(0))}-core bound",
            e2e / bound,
            f">= {TARGET_VS_BOUND}x ({TARGET_VS_BOUND * bound:.0f} events/s)",
            e2e >= TARGET_VS_BOUND * bound,
        ),
        ("intake p99 / bare p99", p99_ratio, f"< {TARGET_P99_VS_BARE}x", p99_ratio < TARGET_P99_VS_BARE),
    ]
    for name, value, target, ok in checks:
        print(f"    {name:21}{value:8.2f}x    target {target}   {'ok' if ok else 'MISSED'}")
    print(
        f"    exactly once         {'every delivery applied once, every wallet at 50' if exact else 'NO'}"
        f"   (batched {[r['deliveries'] for r in results['batched']]}, one task {per_delivery['deliveries']})"
    )
    return exact and all(ok for *_, ok in checks)


def cores_bound(*, bare: dict, replay: dict) -> float:
    """Events per second the cores allow end to end: every delivery is at least
    answered (no cheaper than the bare view, clients included) and applied (no
    cheaper than the file replay applies it, emulator included), so the
    machine's cores divided by the CPU of the two bound the rate, whatever the
    intake and the drain do."""
    bare_ms = sum(bare["cpu"].values()) * 1000 / bare["requests"]
    replay_ms = sum(replay["cpu"].values()) * 1000 / replay["events"]
    return len(os.sched_getaffinity(0)) * 1000 / (bare_ms + replay_ms)


def print_cpu(batched: dict, bare: dict, replay: dict, events: int, bound: float) -> None:
    """CPU per event of each path on this machine, and what the cores allow (cores_bound)."""
    used = batched["cpu"]
    per_event = {name: seconds * 1000 / events for name, seconds in used.items()}
    bare_ms = sum(bare["cpu"].values()) * 1000 / bare["requests"]
    replay_ms = sum(replay["cpu"].values()) * 1000 / replay["events"]
    print(
        "    CPU per event        batched "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in per_event.items())
        + f" = {sum(per_event.values()):.2f} ms; bare view {bare_ms:.2f} ms (server and clients); "
        f"file replay {replay_ms:.2f} ms (process and emulator)"
    )
    print(
        f"    cores' bound         {bound:8.0f} events/s   ({len(os.sched_getaffinity(0))} cores / "
        f"{bare_ms + replay_ms:.2f} ms: answered like the bare view, applied like the file replay)"
    )
