"""The machines tests/hosts builds on this one: Linux namespaces joined by veth
pairs to a bridge, TCP forwarders and an ID-token key server on host C's
address, a host's processes, and a person at host A's admin (see site.py)."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from devtools.emulator import ROOT
from tests.helpers import AUDIENCE, SCHEDULER

PYTHON = sys.executable
PREFIX = "rh"  # of every namespace and link these tests make, with the pid of the session

# What a host's namespaces hold besides the network: its hostname, a disk of its
# own on tmpfs, and the checkout read-only. Prints "ready", then holds the
# namespaces open (every process of the host joins them) until killed.
HOST_SETUP = """
set -e
hostname "$1"
# The checkout is set aside first: it may itself live under /tmp (a CI clone),
# which the host's own tmpfs is about to hide.
aside="/run/revassure-host-$1"
mkdir -p "$aside"
mount --bind "$2" "$aside"
for dir in /tmp /var/tmp /dev/shm; do mount -t tmpfs -o mode=1777,size=512m "host-$1" "$dir"; done
mkdir -p "$2"
mount --bind "$aside" "$2"
mount -o remount,bind,ro "$2"
mkdir -p /tmp/revassure/metrics /tmp/revassure/snapshots
echo ready
exec sleep infinity
"""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def namespaces_refusal() -> str:
    """Why hosts cannot be made here ("" when they can)."""
    if os.geteuid() != 0:
        return "not root: network namespaces, veth pairs and mounts need root (CI runs as root)"
    for tool in ("ip", "unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (iproute2, util-linux)"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return ""


def services_refusal(database: str, broker: str) -> str:
    """Why the hosts' shared services are not at hand ("" when they are): the
    PostgreSQL and Redis URLs given (DATABASE_URL and REDIS_URL in the tests)."""
    if not database.startswith(("postgres://", "postgresql://")):
        return (
            "needs DATABASE_URL on PostgreSQL and REDIS_URL (as .ci/run's second pass sets them): "
            "separate hosts share no SQLite file"
        )
    if not broker:
        return "needs REDIS_URL (the Redis broker the hosts share), as .ci/run's second pass sets it"
    return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> None:
    """Namespaces and links of an earlier session of these tests that died without
    cleaning up (its pid, in their names, is gone)."""
    listed = ip("netns", "list", check=False).stdout.split()
    for name in {entry for entry in listed if re.fullmatch(rf"{PREFIX}\d+[ab]", entry)}:
        if not _alive(int(name[len(PREFIX) : -1])):
            kill_namespace(name)
            ip("netns", "del", name, check=False)
    for link in ip("-o", "link", "show", check=False).stdout.splitlines():
        found = re.search(rf": ({PREFIX}(\d+)(?:br|[ab]))[@:]", link)
        if found and not _alive(int(found.group(2))):
            ip("link", "del", found.group(1), check=False)


def namespace_pids(namespace: str) -> list[int]:
    listed = ip("netns", "pids", namespace, check=False).stdout.split()
    return [int(pid) for pid in listed]


def kill_namespace(namespace: str) -> None:
    """SIGKILL every process in the network namespace, until none is left."""
    deadline = time.monotonic() + 20
    while (pids := namespace_pids(namespace)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def free_subnet() -> int:
    """N of a 10.77.N.0/24 no address of this machine is in."""
    used = ip("-4", "-o", "addr", "show", check=False).stdout
    start = os.getpid() % 200
    for n in [*range(start, 250), *range(1, start)]:
        if f"10.77.{n}." not in used:
            return n
    raise RuntimeError("no free 10.77.N.0/24 subnet")


# -- host C's services: TCP forwarders to this machine's loopback ------------------


class Forwarders:
    """Listeners on C's address, each relaying to a port on 127.0.0.1 (asyncio,
    in a thread of the test process)."""

    def __init__(self, host: str):
        self.host = host
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="forwarders", daemon=True)
        self.thread.start()
        self.servers: list[asyncio.AbstractServer] = []

    def forward(self, target_port: int) -> int:
        """A port on C's address relaying to 127.0.0.1:target_port."""

        async def relay(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        async def handle(client_reader, client_writer):
            try:
                server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(relay(client_reader, server_writer), relay(server_reader, client_writer))

        async def start():
            server = await asyncio.start_server(handle, self.host, 0)
            self.servers.append(server)
            return server.sockets[0].getsockname()[1]

        return asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=10)

    def close(self) -> None:
        async def stop():
            for server in self.servers:
                server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class Certificates:
    """Google's published ID-token keys as host A fetches them: a key of this test,
    served from C's address (https://www.googleapis.com/oauth2/v1/certs in production)."""

    def __init__(self, host: str):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        body = json.dumps({"hosts-key": public.decode()}).encode()

        class Certs(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = HTTPServer((host, 0), Certs)
        self.url = f"http://{host}:{self.server.server_port}/certs"
        threading.Thread(target=self.server.serve_forever, name="certs", daemon=True).start()

    def token(self) -> str:
        """An ID token Cloud Scheduler would send."""
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": AUDIENCE,
            "sub": "hosts-scheduler",
            "email": SCHEDULER,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        }
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return jwt.encode(crypt.RSASigner.from_string(pem, key_id="hosts-key"), claims).decode()

    def close(self) -> None:
        self.server.shutdown()


# -- hosts A and B -----------------------------------------------------------------


@dataclass
class Host:
    """One machine: its namespaces (held by an anchor process), address and processes."""

    name: str  # its hostname: hosta, hostb
    namespace: str
    address: str
    env: dict[str, str]
    logs: Path
    anchor: subprocess.Popen | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    boots: int = 0
    workers_env: dict[str, str] = field(default_factory=dict)  # of its running qcluster
    # Where the running qcluster's lines begin in its log: a cluster started again
    # on the same boot appends to the log of the one before.
    workers_from: int = 0
    paused: int | None = None  # the pid of its cluster's pusher while paused

    def boot(self) -> None:
        """Start the machine afresh: a new hostname, an empty disk, no processes."""
        self.boots += 1
        self.anchor = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "--mount", "--propagation", "private"]
            + ["sh", "-c", HOST_SETUP, "host-setup", self.name, str(ROOT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        said = self.anchor.stdout.readline().strip()
        if said != "ready":
            raise RuntimeError(f"host {self.name} did not boot: {said}{self.anchor.stdout.read()}")

    def command(self, args: list[str]) -> list[str]:
        """`args` run inside this host (its network, hostname and disk)."""
        # cd inside: nsenter's --wd opens the directory before entering, outside the read-only mount.
        enter = ["nsenter", f"--target={self.anchor.pid}", "--net", "--uts", "--mount"]
        return [*enter, "sh", "-c", 'cd "$0" && exec "$@"', str(ROOT), *args]

    def start(self, label: str, args: list[str], **env: str) -> subprocess.Popen:
        log = self.logs / f"{self.name}-{label}-{self.boots}.log"
        with log.open("a") as out:
            process = subprocess.Popen(
                self.command(args),
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[label] = process
        return process

    def run(self, args: list[str], *, timeout: float = 180, **env: str) -> str:
        result = subprocess.run(
            self.command(args), env={**self.env, **env}, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, f"{self.name}: {' '.join(args)}\n{result.stderr[-4000:]}"
        return result.stdout

    def manage(self, *args: str, timeout: float = 180, **env: str) -> str:
        return self.run([PYTHON, "manage.py", *args], timeout=timeout, **env)

    def put_file(self, path: str, data: bytes) -> None:
        """Write `data` to `path` on this host's own disk."""
        subprocess.run(
            self.command(["sh", "-c", 'cat > "$1"', "put-file", path]),
            env=self.env,
            input=data,
            capture_output=True,
            check=True,
            timeout=60,
        )

    def shell(self, code: str, **env: str):
        """Run Python in the product on this host; the JSON its last line printed."""
        out = self.manage("shell", "-c", code, **env)
        return json.loads(out.strip().splitlines()[-1])

    @property
    def workers_log(self) -> Path:
        return self.logs / f"{self.name}-qcluster-{self.boots}.log"

    def start_workers(self, **env: str) -> None:
        self.workers_from = self.workers_log.stat().st_size if self.workers_log.exists() else 0
        self.start("qcluster", [PYTHON, "manage.py", "qcluster"], **env)
        self.workers_env = env

    def workers_started(self) -> list[str]:
        """The pid of the running cluster's pusher, once it takes tasks (in a list)."""
        return self.wait_log(self.workers_log, r"pushing tasks at (\d+)", after=self.workers_from)

    def pause_taking_tasks(self) -> None:
        """Stop (SIGSTOP) the cluster's pusher, the one process that takes tasks from
        the broker, and let its last wait on Redis (BLPOP, 1 s) run out: the
        cluster takes nothing more, while its workers finish what they hold and its
        guard keeps running the schedules. (Its pid is in its own log line.)"""
        self.paused = int(self.workers_started()[-1])
        os.kill(self.paused, signal.SIGSTOP)
        time.sleep(1.5)

    def resume_taking_tasks(self) -> None:
        os.kill(self.paused, signal.SIGCONT)
        self.paused = None

    def wait_log(self, log: Path, pattern: str, timeout: float = 60, after: int = 0) -> list[str]:
        """The matches of `pattern` in `log` (past its first `after` bytes), once there are any."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_bytes()[after:].decode(errors="replace") if log.exists() else ""
            found = re.findall(pattern, text)
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{log.name} never said {pattern!r}")

    def stop(self, label: str) -> None:
        """A graceful stop (SIGTERM; django-q finishes the tasks in hand), as a deploy does."""
        process = self.processes.pop(label)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def pids(self) -> list[int]:
        return namespace_pids(self.namespace)

    def kill(self) -> None:
        """SIGKILL every process of the host: its workers, its web server, its anchor
        (and so its disk). Nothing of it finishes, nothing is handed over."""
        kill_namespace(self.namespace)
        for process in [*self.processes.values(), self.anchor]:
            if process is not None:
                process.wait(timeout=10)
        self.processes.clear()
        self.anchor = None

    def log_tails(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}"
            for path in sorted(self.logs.glob(f"{self.name}-*.log"))
        )


class Admin:
    """A person signed in to the admin on host A's gunicorn, over HTTP."""

    def __init__(self, url: str, username: str, password: str):
        self.url = url
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        page = self.get("/admin/login/?next=/admin/")
        self.post("/admin/login/?next=/admin/", {"username": username, "password": password}, page)
        assert any(cookie.name == "sessionid" for cookie in self.cookies), "the sign-in failed"

    def _csrf(self, page: str) -> str:
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if found:
            return found.group(1)
        return next(cookie.value for cookie in self.cookies if cookie.name == "csrftoken")

    def get(self, path: str) -> str:
        with self.opener.open(self.url + path, timeout=60) as response:
            return response.read().decode()

    def post(self, path: str, data: dict, page: str | None = None) -> str:
        """Submit a form of `page` (fetched from `path` when not given); the page it
        leads to (its address in `self.location`)."""
        page = page if page is not None else self.get(path)
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": self._csrf(page), **data}).encode()
        request = urllib.request.Request(self.url + path, data=body, headers={"Referer": self.url + path})
        with self.opener.open(request, timeout=60) as response:
            self.location = response.geturl()
            return response.read().decode()

    def upload(self, path: str, field: str, filename: str, body: bytes) -> str:
        """Submit the form at `path` with a file in `field`, as a browser sends it
        (multipart/form-data); the page it leads to (its address in `self.location`)."""
        page = self.get(path)
        boundary = secrets.token_hex(16)
        content = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
            f"{self._csrf(page)}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        content += body + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            self.url + path,
            data=content,
            headers={"Referer": self.url + path, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with self.opener.open(request, timeout=60) as response:
            self.location = response.geturl()
            return response.read().decode()
