"""The same answer on any number of machines: a full run asked for on host A's
admin and split over the workers of hosts A and B finds exactly what a run inline
in one process finds, for two chunk sizes: the same wallets, violations, deltas
and totals, a checksum that differs only by what identifies the run, and chunks
counted on both hosts, each once."""

import pytest


@pytest.mark.parametrize("chunk_size", [100, 200])
def test_a_run_split_over_two_hosts_finds_what_one_process_finds(hosts, chunk_size):
    hosts.workers(RECONCILE_CHUNK_SIZE=str(chunk_size))

    admin = hosts.admin()
    run_id = hosts.request_run(admin)
    split = hosts.finished(run_id, timeout=90)

    assert split["status"] == "completed", f"{split['error']}\n{hosts.log_tails()}"
    ours, _ = hosts.same_answer_inline(run_id, RECONCILE_CHUNK_SIZE=str(chunk_size))
    wallets = ours["header"]["wallets_checked"]
    assert wallets >= hosts.seeded  # and those other tests opened
    assert ours["header"]["violations_count"] > 50  # about 5% drifted, 5 malformed
    chunks = -(-wallets // chunk_size)
    assert (split["chunks_total"], split["chunks_done"]) == (chunks, chunks)
    assert set(ours["checked_by"]) == {"hosta", "hostb"}, ours["checked_by"]
    assert sum(ours["checked_by"].values()) == chunks
    page = admin.get(f"/admin/reconciliation/reconciliationrun/{run_id}/change/")
    assert all(f"{host}: {n} chunk" in page for host, n in ours["checked_by"].items())
    if ours["header"].get("read_mode") == "point_in_time":
        # On a backend that reads at a point in time, its findings at T0 re-derive.
        hosts.a.manage("verify_reports", "--rederive", str(run_id))
