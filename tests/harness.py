"""The whole system as real processes, for tests/e2e, tests/faults and the benchmark.

A `System` is `dropimport run`, or `dropimport agent` and a worker, on a home, a RabbitMQ vhost
and a database of its own, on free ports: it takes the ports, makes the environment, starts and
stops the processes it started (whole process groups for those started in one), waits until
they serve, and runs the `dropimport` command line on them.

Nothing here needs pytest: the benchmark (bench/system.py) starts its system with it too. What
goes wrong (a process exited, the system did not start or stop) raises `Failed`, an assertion
to the tests, that the benchmark reports as its own error.
"""

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from ftplib import FTP
from pathlib import Path

from tests.clients import logged_in

#: The `dropimport` command of this virtualenv.
DROPIMPORT = shutil.which("dropimport", path=str(Path(sys.executable).parent)) or "dropimport"
#: A worker started the ecosystem's own way: dramatiq on the worker's actors, 1 x 2 threads.
WORKER = [sys.executable, "-m", "dramatiq", "worker.runtime.actors", "--processes", "1",
          "--threads", "2"]
#: The tree of these tests: the processes started import its code, wherever the virtualenv's
#: editable install points (another worktree's, say).
ROOT = Path(__file__).resolve().parent.parent
BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/{vhost}"
#: How many times `System.start` takes new ports when another process took one of its own.
PORT_TRIES = 3


class Failed(AssertionError):
    """The system did not do what it should have: start, keep running, stop."""


def free_port():
    """A port free now, from 10000 (never a default of the system's: 2121, 2222, 9180, 9191)
    to below the range the system gives clients' connections: a port that bind(0) picks is in
    that range, where a client socket (a driver's, the broker's) took one before the worker's
    metrics server bound it ("Address already in use", a failed CI run)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):  # not Linux: its usual range starts there
        low = 32768
    while True:
        port = random.randrange(10000, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def accepts(port):
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_until(predicate, timeout=20, what="condition"):
    """What `predicate()` returns once it is true, tried every 0.1 s for `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise Failed(f"timed out waiting for {what}")
        time.sleep(0.1)
    return result


def rabbitmqctl(*args):
    """The output of `rabbitmqctl -q args`."""
    command = shutil.which("rabbitmqctl")
    if command is None:
        raise Failed("rabbitmqctl not found: RabbitMQ must be installed and running")
    done = subprocess.run([command, "-q", *args], capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        raise Failed(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@contextmanager
def rabbitmq_vhost(prefix):
    """The broker URL of a RabbitMQ vhost `prefix`-<random> of its own, for guest, deleted at
    the end: no message outlives it, none of anybody else's is seen."""
    vhost = f"{prefix}-{secrets.token_hex(4)}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield BROKER_URL.format(vhost=vhost)
    finally:
        rabbitmqctl("delete_vhost", vhost)


def processes_of(home):
    """PIDs of every process started with DROPIMPORT_HOME=home (agent, worker, children)."""
    marker = f"DROPIMPORT_HOME={home}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


class System:
    """The processes of one system on `home` (a path), with the broker and the database at
    those URLs, its FTP and SFTP ports and both metrics ports free ones; `env` adds settings.
    What the processes print goes to `log`, by default system.log beside the home."""

    def __init__(self, home, broker_url, database_url, log=None, env=None):
        self.home = home
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "DROPIMPORT_HOME": str(home),
            "DROPIMPORT_BROKER_URL": broker_url,
            "DROPIMPORT_DATABASE_URL": database_url,
        }
        self._settings = env or {}
        self._take_ports()
        self.log = log or home.parent / "system.log"
        self.processes = []
        self._groups = set()  # the processes started in a process group of their own

    def _take_ports(self):
        self.port = free_port()
        self.sftp_port = free_port()
        self.metrics_ports = {"agent": free_port(), "worker": free_port()}
        self.env.update({
            "DROPIMPORT_FTP_PORT": str(self.port),
            "DROPIMPORT_SFTP_PORT": str(self.sftp_port),
            "DROPIMPORT_METRICS_PORT": str(self.metrics_ports["agent"]),
            "DROPIMPORT_WORKER_METRICS_PORT": str(self.metrics_ports["worker"]),
            **self._settings,
        })

    def cli(self, *args, input=None, check=True, env=None):
        result = subprocess.run(
            [DROPIMPORT, *args], env={**self.env, **(env or {})}, input=input,
            capture_output=True, text=True, timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"dropimport {' '.join(args)} failed: {result.stderr}")
        return result

    def start(self, *commands, env=None, wait_for_ftp=True, group=False):
        """Start `commands` (default: `dropimport run`), with `env` on top of the system's;
        each in a process group of its own with `group`, as from a terminal of its own.

        Return them once the FTP port accepts connections (unless `wait_for_ftp` is false).
        """
        self.home.mkdir(parents=True, exist_ok=True)
        for attempt in range(PORT_TRIES):
            logged = self.log.stat().st_size if self.log.exists() else 0
            started = []
            with open(self.log, "ab") as log:
                for command in commands or [[DROPIMPORT, "run"]]:
                    started.append(subprocess.Popen(
                        command, env={**self.env, **(env or {})}, stdout=log,
                        stderr=subprocess.STDOUT, start_new_session=group,
                    ))
            self.processes += started
            if group:
                self._groups.update(started)
            if not wait_for_ftp:
                return started
            try:
                self.wait_until_ready()
                return started
            except Failed:
                if not self._lost_a_port(started, logged, env) or attempt == PORT_TRIES - 1:
                    raise
            # Another process of the host bound a port between free_port() and the
            # system's bind: start again on other ports, unless they are a test's own.
            self.stop(*started)
            for process in started:
                self.processes.remove(process)
                self._groups.discard(process)
            self._take_ports()
        raise AssertionError("unreachable")

    def _lost_a_port(self, started, logged, env):
        """Whether one of `started` exited because a port of the system's was taken, and
        no port was set by the test (starting anew on others then changes nothing it set)."""
        with open(self.log, "rb") as log:
            log.seek(logged)
            printed = log.read()
        return (any(process.poll() is not None for process in started)
                and b"Address already in use" in printed
                and not any(name.endswith("_PORT") for name in {**self._settings, **(env or {})}))

    def exited(self):
        """The processes it started that have exited."""
        return [process for process in self.processes if process.poll() is not None]

    def wait_until_ready(self, timeout=30, ready=None):
        """Until the FTP and SFTP ports accept connections and `ready()` (if given) is true;
        failing as soon as one of its processes exited."""

        def up():
            if exited := self.exited():
                raise Failed(f"{[p.args for p in exited]} exited: {self.log.read_text()}")
            sftp = self.env["DROPIMPORT_SFTP_PORT"] == "off" or accepts(self.sftp_port)
            return accepts(self.port) and sftp and (ready is None or ready())

        wait_until(up, timeout, "the system to start")

    def _signal(self, process, number):
        if process.poll() is None:
            if process in self._groups:
                os.killpg(process.pid, number)
            else:
                process.send_signal(number)

    def stop(self, *processes, timeout=30):
        """SIGTERM `processes` (default: all), the whole group of one started in a group;
        return their exit codes. Those still running after `timeout` s are killed: that fails."""
        processes = processes or self.processes
        for process in processes:
            self._signal(process, signal.SIGTERM)
        try:
            return [process.wait(timeout=timeout) for process in processes]
        except subprocess.TimeoutExpired as expired:
            for process in processes:
                self._signal(process, signal.SIGKILL)
                process.wait()
            raise Failed(f"{expired.cmd} did not stop within {timeout} s") from expired

    def kill(self, process):
        """SIGKILL one of its processes (its group, if it leads one), as a crash would; it may
        then be started anew."""
        self._signal(process, signal.SIGKILL)
        process.wait()
        self.processes.remove(process)
        self._groups.discard(process)

    def close(self):
        """Stop the processes still running, and kill those of the home left behind (children
        of its processes that outlived them): that fails."""
        try:
            if any(process.poll() is None for process in self.processes):
                self.stop()
        finally:
            leftover = processes_of(self.home)
            for pid in leftover:
                os.kill(pid, signal.SIGKILL)
        if leftover:
            raise Failed("processes left behind")

    def ftp(self, user, password):
        ftp = FTP()
        ftp.connect("127.0.0.1", self.port, timeout=10)
        return logged_in(ftp, user, password)

    def imports(self, account=None):
        args = ["imports", "list", "--json"] + (["--account", account] if account else [])
        return json.loads(self.cli(*args).stdout)

    def wait_for_imports(self, count, account=None, timeout=30):
        """Wait until `count` imports reached a final status; return them, newest first."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.imports(account)
            finished = [r for r in records if r["status"] in (
                "imported", "rejected", "failed", "previewed", "held", "rolled_back")]
            if len(finished) >= count:
                return finished
            if time.monotonic() > deadline:
                raise AssertionError(f"imports not finished: {records}\n{self.log.read_text()}")
            time.sleep(0.1)

    def wait_for(self, condition, timeout=30):
        """Wait until `condition()` is true."""
        return wait_until(condition, timeout, "the imports to change")

    def contacts(self, account):
        out = self.cli("contacts", "export", account, "--format", "jsonl").stdout
        return {c["email"]: c for c in map(json.loads, out.splitlines())}
