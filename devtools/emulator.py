"""Start a local Firestore emulator (development and tests only).

Two emulators serve the real google-cloud-firestore client, chosen by
`FIRESTORE_EMULATOR` (`npm` by default, or `google`):

- `google`: Google's own Cloud Firestore emulator (the Debian package
  `google-cloud-cli-firestore-emulator`, Java), what `gcloud emulators firestore
  start` runs. It is the reference: where the two disagree, it is right.
  `FIRESTORE_GOOGLE_EMULATOR` names its launcher when it is not in the package's place.
- `npm`: `@firestore-emulator/server` from package.json (`npm ci`) behind
  scripts/firestore-emulator.js, fast, used for the bench's ratios.

Used by the test fixtures, `make demo` (scripts/demo.sh through `python -m
devtools.emulator`) and `make bench`.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "firestore-emulator.js"
PACKAGE = ROOT / "node_modules" / "@firestore-emulator" / "server"
GOOGLE_LAUNCHER = Path("/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator")
KINDS = ("npm", "google")
# Google's launcher prints this once it answers requests (its port opens earlier).
GOOGLE_READY = "Dev App Server is now running"


class EmulatorUnavailable(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def configured_kind() -> str:
    kind = os.environ.get("FIRESTORE_EMULATOR", "").strip().lower() or "npm"
    if kind not in KINDS:
        raise EmulatorUnavailable(f"FIRESTORE_EMULATOR={kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def google_launcher() -> Path | None:
    """Where Google's emulator launcher is, or None when it is not installed."""
    named = os.environ.get("FIRESTORE_GOOGLE_EMULATOR")
    candidates = [Path(named)] if named else []
    found = shutil.which("cloud_firestore_emulator")
    candidates += [Path(found)] if found else []
    candidates.append(GOOGLE_LAUNCHER)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def google_available() -> bool:
    return google_launcher() is not None and shutil.which("java") is not None


@dataclass(frozen=True)
class Emulator:
    host: str  # host:port, for FIRESTORE_EMULATOR_HOST
    pid: int  # the launcher; Google's starts java in the launcher's process group
    kind: str = "npm"

    def cpu_seconds(self) -> float:
        """CPU time the emulator's processes have used so far (Linux /proc)."""
        return sum(process_cpu_seconds(pid) for pid in process_group(self.pid))


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user and system) a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_group(leader: int) -> list[int]:
    """The live processes whose process group is `leader` (the leader included)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == leader:
            pids.append(int(entry.name))
    return pids or [leader]


class _Output:
    """Collects a process's output in a thread, so its pipe never fills."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line)
            if GOOGLE_READY in line or line.startswith("ready"):
                self.ready.set()

    def text(self) -> str:
        return "".join(self.lines[-40:])


def _command(kind: str, port: int, rules: Path | None, host: str = "127.0.0.1") -> list[str]:
    if kind == "google":
        launcher = google_launcher()
        if launcher is None or shutil.which("java") is None:
            raise EmulatorUnavailable(
                "Google's Firestore emulator is not installed: apt-get install "
                "google-cloud-cli-firestore-emulator with Java 17, or set FIRESTORE_GOOGLE_EMULATOR"
            )
        command = [str(launcher), "start", f"--host={host}", f"--port={port}"]
        return command + ([f"--rules={rules}"] if rules else [])
    node = shutil.which("node")
    if node is None or not PACKAGE.exists():
        raise EmulatorUnavailable(
            "the npm Firestore emulator is not installed: run `npm ci` (make install does)"
        )
    if rules:
        raise EmulatorUnavailable("security rules are enforced by Google's emulator only")
    return [node, str(SCRIPT), str(port), host]


def _stop(process: subprocess.Popen) -> None:
    """End the emulator's whole process group (Google's launcher is a shell script)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            # java may outlive the shell that started it: wait for the group to empty.
            deadline = time.monotonic() + wait
            while process_group(process.pid) != [process.pid] and time.monotonic() < deadline:
                time.sleep(0.05)
            if process_group(process.pid) == [process.pid]:
                break
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def running_emulator(
    timeout: float = 60.0,
    *,
    kind: str | None = None,
    env: dict[str, str] | None = None,
    rules: Path | None = None,
    host: str = "127.0.0.1",
):
    """Yield a fresh emulator (its host:port, pid and kind); stop it on exit.

    `kind` is `npm` or `google` (default: FIRESTORE_EMULATOR). `env` adds to the
    launcher's environment, e.g. FIRESTORE_EMULATOR_LOCK_TIMEOUT_MS for ours.
    `rules` starts Google's emulator enforcing that rules file. `host` is the
    address it listens on (only there): the loopback by default, another
    address of this machine for clients in other network namespaces.
    """
    kind = kind or configured_kind()
    port = free_port(host)
    process = subprocess.Popen(
        _command(kind, port, rules, host),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        output = _Output(process.stdout)
        deadline = time.monotonic() + timeout
        while not output.ready.wait(0.05):
            if process.poll() is not None:
                raise EmulatorUnavailable(
                    f"{kind} emulator exited with {process.returncode}: {output.text()}"
                )
            if time.monotonic() > deadline:
                raise EmulatorUnavailable(f"{kind} emulator did not start within {timeout}s: {output.text()}")
        yield Emulator(host=f"{host}:{port}", pid=process.pid, kind=kind)
    finally:
        _stop(process)


def main() -> None:
    """`python -m devtools.emulator PORT [HOST]`: serve the configured emulator on
    HOST (the loopback by default) until stopped."""
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    port = int(sys.argv[1]) if len(sys.argv) > 1 else free_port(host)
    kind = configured_kind()
    command = _command(kind, port, None, host)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
