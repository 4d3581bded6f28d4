import glob
import os
import re
from pathlib import Path

import pytest
from prometheus_client import multiprocess

METRICS_TOKEN = "metrics-test-token"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wipe_files_of_ended_processes() -> None:
    """The shared test directory keeps the files of this run's processes only."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    for path in Path(directory).glob("*.db"):
        found = re.search(r"_(\d+)\.db$", path.name)
        if found and not _alive(int(found.group(1))):
            path.unlink(missing_ok=True)


_wipe_files_of_ended_processes()


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = METRICS_TOKEN
    return METRICS_TOKEN


def own_samples() -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of this process's counters and
    histograms only (other test runs may share the directory)."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    files = glob.glob(os.path.join(directory, f"*_{os.getpid()}.db"))
    samples = {}
    for family in multiprocess.MultiProcessCollector.merge(files, accumulate=True):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture
def counted():
    """counted() -> a function giving how much a sample moved since the fixture was made."""
    before = own_samples()

    def moved(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return own_samples().get(key, 0) - before.get(key, 0)

    return moved
