"""Settlement part of `make bench`: matching a statement against the ledger.

Seeds WALLETS wallets, each with PAYMENTS_PER_WALLET purchase entries whose ids
derive from their payment ids (as replay writes them), writes PayNow
statements of the small and the large size over those wallets (with about 1%
of rows broken: points that differ, payments never credited), then measures,
each in a fresh process:

- settlement: the product's run (`reconcile_file`, as `manage.py
  reconcile_settlement` runs it: digest, parse, batched entry reads, outcomes
  stored, sealed, mirrored) over the large statement;
- floor: the same batched reads of `wallets/{uid}/ledger/{entry id}` for every
  row (BatchGetDocuments through the public generated client, BATCH names a
  request, as many requests in flight as the product has), with no logic: the
  keys are listed before the clock starts;

and the product's peak memory at the small and the large statement (target:
within 15%, since the statement is streamed and the work is done in chunks).

Standalone: `python bench/settlement_bench.py [--small N] [--large N]
[--wallets N] [--repeat N]` starts its own emulator. From bench/bench.py:
`measure_settlement(args, env, work)` then `report_settlement(args, figures)`
(args needs `repeat`; the sizes default when absent).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WALLETS = 20_000
SMALL_ROWS = 20_000
LARGE_ROWS = 100_000
PAYMENTS_PER_WALLET = LARGE_ROWS // WALLETS
TARGET_VS_FLOOR = 1.5
TARGET_MEMORY = 1.15
BATCH = 500  # names in one BatchGetDocuments, as the gateway sends them
SETTLED = "2026-11-25T12:00:00+00:00"


def _django(db_path: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "revassure.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    os.environ["DATABASE_URL"] = f"sqlite:///{db_path}"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _uid(n: int) -> str:
    return f"w{n:05d}"


def _payment(wallet: int, k: int) -> str:
    return f"pay_{k}_{wallet:05d}"


def _points(wallet: int, k: int) -> int:
    return 10 + (wallet * 7 + k * 13) % 590


# -- seeding and statements (parent process) ------------------------------------------


REPEAT = 2  # at most: floor and product over 100,000 rows in turns


def seed(project: str, wallets: int) -> float:
    from revassure.firestore import FirestoreGateway

    def items():
        for w in range(wallets):
            entries = {
                f"purchase-{_payment(w, k)}": {
                    "type": "purchase",
                    "amount": _points(w, k),
                    "paymentId": _payment(w, k),
                }
                for k in range(PAYMENTS_PER_WALLET)
            }
            yield _uid(w), sum(_points(w, k) for k in range(PAYMENTS_PER_WALLET)), entries

    started = time.perf_counter()
    FirestoreGateway(project).write_wallets(items())
    return time.perf_counter() - started


def write_statement(path: Path, rows: int, wallets: int) -> Path:
    """`rows` rows over the wallets, payment k of wallet w for row k*wallets+w;
    one row in 100 with other points, one in 250 for a payment never credited."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            [
                "type",
                "payment_id",
                "reference",
                "user_id",
                "points",
                "amount",
                "currency",
                "status",
                "settled_at",
            ]
        )
        for n in range(rows):
            w, k = n % wallets, n // wallets
            payment, points = _payment(w, k), _points(w, k)
            if n % 250 == 7:
                payment = f"pay_lost_{n}"
            elif n % 100 == 3:
                points += 1
            writer.writerow(
                ["payment", payment, "", _uid(w), points, f"{points / 10:.2f}", "EUR", "settled", SETTLED]
            )
    return path


# -- children: one measurement per fresh process ----------------------------------------


def child_settlement(project: str, db_path: str, statement: str) -> dict:
    _django(db_path)
    from revassure.firestore import get_gateway
    from settlement import services

    gateway = get_gateway(project)
    gateway.ledger_entry_amounts([(_uid(0), "purchase-none")])  # start the client before the clock
    started = time.perf_counter()
    result = services.reconcile_file(statement, gateway=gateway)
    seconds = time.perf_counter() - started
    run = result.run
    assert run is not None  # not a dry run: a kept run
    assert run.status == "completed", run.error
    return {"rows": run.rows, "seconds": seconds, "summary": result.summary}


def child_floor(project: str, statement: str, in_flight: int) -> dict:
    """Bare batched reads of every row's entry, `in_flight` requests at a time."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from google.cloud.firestore_v1.services.firestore import FirestoreClient
    from google.cloud.firestore_v1.services.firestore.transports import FirestoreGrpcTransport
    from google.cloud.firestore_v1.types import firestore as firestore_pb

    database = f"projects/{project}/databases/(default)"
    with open(statement, newline="") as rows:
        reader = csv.reader(rows)
        next(reader)
        names = [f"{database}/documents/wallets/{r[3]}/ledger/purchase-{r[1]}" for r in reader]
    channel = grpc.insecure_channel(os.environ["FIRESTORE_EMULATOR_HOST"])
    api = FirestoreClient(transport=FirestoreGrpcTransport(channel=channel))
    metadata = (("google-cloud-resource-prefix", database), ("authorization", "Bearer owner"))

    def read(batch: list[str]) -> int:
        request = firestore_pb.BatchGetDocumentsRequest(database=database, documents=batch)
        request_pb = firestore_pb.BatchGetDocumentsRequest.wrap(
            firestore_pb.BatchGetDocumentsRequest.pb(request)
        )
        found = 0
        for response in api.batch_get_documents(request=request_pb, metadata=metadata):
            found += firestore_pb.BatchGetDocumentsResponse.pb(response).HasField("found")
        return found

    read(names[:1])  # the channel up before the clock
    batches = [names[i : i + BATCH] for i in range(0, len(names), BATCH)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        found = sum(pool.map(read, batches))
    return {"rows": len(names), "found": found, "seconds": time.perf_counter() - started}


# -- the part, for bench/bench.py ------------------------------------------------------


def spawn(env: dict, *args: str) -> dict:
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"settlement bench child {args} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def _migrated(env: dict, path: Path) -> Path:
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"],
        env={**env, "DATABASE_URL": f"sqlite:///{path}"},
        check=True,
    )
    return path


def measure_settlement(args, env: dict, work: Path) -> dict:
    """Seed, write both statements, then floor and product in turns (each in a
    fresh process, the product into a fresh database), `args.repeat` times at
    the large size and once more at each size for memory. Needs
    FIRESTORE_EMULATOR_HOST in `env` (bench.py's emulator)."""
    from settlement.matching import READS_AHEAD

    wallets = getattr(args, "settlement_wallets", WALLETS)
    small = getattr(args, "settlement_small", SMALL_ROWS)
    large = getattr(args, "settlement_large", LARGE_ROWS)
    project = f"bench-settlement-{wallets}"
    seconds = seed(project, wallets)
    print(f"seeded {wallets} wallets x {PAYMENTS_PER_WALLET} purchases in {seconds:.1f} s", flush=True)
    statements = {
        size: write_statement(work / f"statement-{size}.csv", size, wallets) for size in (small, large)
    }
    floors, runs, memory = [], [], {}
    for n in range(min(args.repeat, REPEAT)):
        floors.append(spawn(env, "--child", "floor", project, str(statements[large]), str(READS_AHEAD)))
        db = _migrated(env, work / f"settlement-{large}-{n}.sqlite3")
        runs.append(spawn(env, "--child", "settlement", project, str(db), str(statements[large])))
    for size in (small, large):
        db = _migrated(env, work / f"settlement-{size}-memory.sqlite3")
        memory[size] = spawn(env, "--child", "settlement", project, str(db), str(statements[size]))[
            "peak_rss_mb"
        ]
    print("measured settlement", flush=True)
    return {
        "small": small,
        "large": large,
        "wallets": wallets,
        "run": min(runs, key=lambda r: r["seconds"]),
        "floor": min(floors, key=lambda r: r["seconds"]),
        "memory": memory,
    }


def report_settlement(args, figures: dict) -> bool:
    run, floor = figures["run"], figures["floor"]
    ours, bare = run["rows"] / run["seconds"], floor["rows"] / floor["seconds"]
    ratio = bare / ours
    summary = run["summary"]
    print(f"\nsettlement of a {figures['large']:,}-row statement over {figures['wallets']:,} wallets")
    print(
        f"    settlement           {ours:8.0f} rows/s   ({run['seconds']:.1f} s: digest, parse, reads, "
        f"{summary['matched']:,} matched, {summary['points_mismatch']:,} points mismatch, "
        f"{summary['missing_in_ledger']:,} missing in the ledger; stored, sealed, mirrored)"
    )
    print(f"    floor (bare reads)   {bare:8.0f} rows/s   (batched entry reads, no logic)")
    speed_ok = ratio <= TARGET_VS_FLOOR
    verdict = "ok" if speed_ok else "MISSED"
    print(f"    floor / settlement   {ratio:8.2f}x    target <= {TARGET_VS_FLOOR}x   {verdict}")
    small, large = figures["memory"][figures["small"]], figures["memory"][figures["large"]]
    growth = large / small
    memory_ok = growth <= TARGET_MEMORY
    print(
        f"\n  peak memory of settlement: {small:.0f} MB at {figures['small']:,} rows, {large:.0f} MB at "
        f"{figures['large']:,}: {growth:.2f}x   target <= {TARGET_MEMORY}x  {'ok' if memory_ok else 'MISSED'}"
    )
    return speed_ok and memory_ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wallets", dest="settlement_wallets", type=int, default=WALLETS)
    parser.add_argument("--small", dest="settlement_small", type=int, default=SMALL_ROWS)
    parser.add_argument("--large", dest="settlement_large", type=int, default=LARGE_ROWS)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from devtools.emulator import running_emulator

    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "revassure.settings")
    work = Path(tempfile.mkdtemp(prefix="revassure-settlement-bench-"))
    with running_emulator() as emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
        env = {**os.environ, "LOG_LEVEL": "WARNING"}
        _django(str(work / "parent.sqlite3"))
        figures = measure_settlement(args, env, work)
    return 0 if report_settlement(args, figures) else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind == "settlement":
            result = child_settlement(rest[0], rest[1], rest[2])
        else:
            result = child_floor(rest[0], rest[1], int(rest[2]))
        result["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result))
        sys.exit(0)
    sys.exit(main())
