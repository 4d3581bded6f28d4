"""Start the local Firestore emulator (development and tests only).

`@firestore-emulator/server` comes from package.json (`npm ci`);
scripts/firestore-emulator.js serves it on a loopback port until the process
ends. Used by the test fixtures and `make bench`; `make demo` starts the same
script from scripts/demo.sh.
"""

import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "firestore-emulator.js"
PACKAGE = ROOT / "node_modules" / "@firestore-emulator" / "server"


class EmulatorUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorUnavailable(f"emulator exited with {process.returncode}: {process.stdout.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise EmulatorUnavailable(f"emulator did not listen on {port} within {timeout}s")


@dataclass(frozen=True)
class Emulator:
    host: str  # host:port, for FIRESTORE_EMULATOR_HOST
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the emulator process has used so far (Linux /proc)."""
        return process_cpu_seconds(self.pid)


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def running_emulator(timeout: float = 30.0, *, env: dict[str, str] | None = None):
    """Yield a fresh emulator (its host:port and pid); stop it on exit.

    `env` adds to the launcher's environment, e.g. FIRESTORE_EMULATOR_LOCK_TIMEOUT_MS,
    or FIRESTORE_EMULATOR_BARE=1 for the package without our launcher's promises.
    """
    node = shutil.which("node")
    if node is None or not PACKAGE.exists():
        raise EmulatorUnavailable("the Firestore emulator is not installed: run `npm ci` (make install does)")
    port = free_port()
    process = subprocess.Popen(
        [node, str(SCRIPT), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        _wait_for_port(port, process, timeout)
        yield Emulator(host=f"127.0.0.1:{port}", pid=process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)
