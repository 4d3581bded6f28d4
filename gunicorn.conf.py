"""gunicorn's settings for revassure (read from the working directory).

prometheus-client's multiprocess mode: the directory the workers share their
counters through is wiped when the server starts (counters of an earlier life
would be summed with this one's) and a worker that exits is marked dead, so its
live gauges stop counting.
"""

import os
import shutil
from pathlib import Path


def on_starting(server):
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
        Path(directory).mkdir(parents=True, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # why: prometheus_client must be imported after PROMETHEUS_MULTIPROC_DIR is
        # known, and only when it is set; this file is read before any app code.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
