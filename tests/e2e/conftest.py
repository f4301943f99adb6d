"""The whole system as real processes: `dropimport run` with a home, a RabbitMQ vhost and a
database of its own, driven by real FTP clients and the `dropimport` CLI."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from ftplib import FTP
from pathlib import Path

import pytest

from bench.system import free_port
from tests.clients import logged_in

DROPIMPORT = shutil.which("dropimport", path=str(Path(sys.executable).parent)) or "dropimport"


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
    def __init__(self, home, broker_url, database_url):
        self.home = home
        self.port = free_port()
        self.metrics_ports = {"agent": free_port(), "worker": free_port()}
        self.env = {
            **os.environ,
            "DROPIMPORT_HOME": str(home),
            "DROPIMPORT_BROKER_URL": broker_url,
            "DROPIMPORT_DATABASE_URL": database_url,
            "DROPIMPORT_FTP_PORT": str(self.port),
            "DROPIMPORT_METRICS_PORT": str(self.metrics_ports["agent"]),
            "DROPIMPORT_WORKER_METRICS_PORT": str(self.metrics_ports["worker"]),
        }
        self.log = home.parent / "system.log"
        self.processes = []

    def cli(self, *args, input=None, check=True, env=None):
        result = subprocess.run(
            [DROPIMPORT, *args], env={**self.env, **(env or {})}, input=input,
            capture_output=True, text=True, timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"dropimport {' '.join(args)} failed: {result.stderr}")
        return result

    def start(self, *commands, env=None, wait_for_ftp=True):
        """Start `commands` (default: `dropimport run`), with `env` on top of the system's.

        Return them once the FTP port accepts connections (unless `wait_for_ftp` is false).
        """
        self.home.mkdir(parents=True, exist_ok=True)
        started = []
        with open(self.log, "ab") as log:
            for command in commands or [[DROPIMPORT, "run"]]:
                started.append(subprocess.Popen(
                    command, env={**self.env, **(env or {})}, stdout=log,
                    stderr=subprocess.STDOUT,
                ))
        self.processes += started
        if not wait_for_ftp:
            return started
        deadline = time.monotonic() + 30
        while True:
            exited = [p.args for p in self.processes if p.poll() is not None]
            assert not exited, f"{exited} exited: {self.log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return started
            except OSError:
                assert time.monotonic() < deadline, "the FTP server did not start"
                time.sleep(0.1)

    def stop(self, *processes):
        """SIGTERM `processes` (default: all); return their exit codes."""
        processes = processes or self.processes
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        return [process.wait(timeout=30) for process in processes]

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
            finished = [r for r in records if r["status"] in ("imported", "rejected", "failed")]
            if len(finished) >= count:
                return finished
            if time.monotonic() > deadline:
                raise AssertionError(f"imports not finished: {records}\n{self.log.read_text()}")
            time.sleep(0.1)

    def contacts(self, account):
        out = self.cli("contacts", "export", account, "--format", "jsonl").stdout
        return {c["email"]: c for c in map(json.loads, out.splitlines())}


@pytest.fixture
def stopped_system(home, broker_url, database_url):
    """A system with its own home, vhost and database (SQLite, then PostgreSQL), ready to start."""
    system = System(home.root, broker_url, database_url)
    yield system
    if any(process.poll() is None for process in system.processes):
        system.stop()
    leftover = processes_of(home.root)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert not leftover, "processes left behind"


@pytest.fixture
def system(stopped_system):
    """A running `dropimport run`."""
    stopped_system.start()
    return stopped_system
