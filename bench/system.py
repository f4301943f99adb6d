"""The whole system as real processes, for the workloads over FTP (W4, W6).

`dropimport agent` and `dropimport worker` run on a home of their own, a RabbitMQ vhost of
their own (made with rabbitmqctl, deleted at the end) and the benchmark's database; ftplib
clients upload as customers do, and the import records say when each import committed.
"""

import hashlib
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from ftplib import FTP, all_errors
from pathlib import Path
from typing import NamedTuple

from .errors import BenchError
from .run_one import peak_rss_mb

log = logging.getLogger(__name__)

DROPIMPORT = Path(sys.executable).with_name("dropimport")
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/{vhost}"
#: Every account's FTP password.
PASSWORD = "bench"
#: Generous: 200 logins at once each hash a password (argon2id, 64 MB) on two cores.
FTP_TIMEOUT = 600
READY = "Worker process is ready for action."  # what each dramatiq worker process logs
POLL = 0.05


class Upload(NamedTuple):
    """One file sent over FTP, timed on the client (UTC): from connecting to the 226 reply."""

    account: str
    sha256: str
    started_at: datetime
    replied_at: datetime


def rabbitmqctl(*args):
    command = shutil.which("rabbitmqctl")
    if command is None:
        raise BenchError("rabbitmqctl not found: RabbitMQ must be installed and running")
    done = subprocess.run([command, "-q", *args], capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        raise BenchError(f"rabbitmqctl {' '.join(args)}: {done.stderr.strip()}")


def free_port():
    """A port free now, below the range the system gives clients' connections: a port that
    bind(0) picks is in that range, where a client socket (a driver's, the broker's) took one
    before the worker's metrics server bound it ("Address already in use", a failed CI run)."""
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


class System:
    """The agent and a worker of `processes` x `threads` on `home`, from `with` to its end.

    `accounts` are the accounts of the home (FTP login: the account's name, password PASSWORD);
    they all upload from 127.0.0.1, so the agent lets that many connections in from one address.
    """

    def __init__(self, home, database, accounts, processes, threads):
        self.home = home
        self.database = database
        self.accounts = accounts
        self.processes = processes
        self.threads = threads
        self.port = free_port()
        self.vhost = f"dropimport-bench-{secrets.token_hex(4)}"
        self.log = home.root.with_suffix(".log")
        self.env = {
            **os.environ,
            "DROPIMPORT_HOME": str(home.root),
            "DROPIMPORT_BROKER_URL": RABBITMQ.format(vhost=self.vhost),
            "DROPIMPORT_DATABASE_URL": database.url,
            "DROPIMPORT_FTP_PORT": str(self.port),
            # Metrics served as in production, on ports of this run's own.
            "DROPIMPORT_METRICS_PORT": str(free_port()),
            "DROPIMPORT_WORKER_METRICS_PORT": str(free_port()),
            "DROPIMPORT_FTP_MAX_CONNECTIONS_PER_IP": str(max(len(accounts), 20)),
        }
        self._agent = self._worker = None

    def __enter__(self):
        rabbitmqctl("add_vhost", self.vhost)
        try:
            rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
            with open(self.log, "ab") as output:
                self._agent = self._start(output, "agent")
                self._worker = self._start(output, "worker", "--processes", str(self.processes),
                                           "--threads", str(self.threads))
            self._wait_until_ready()
        except BaseException:
            self.__exit__()
            raise
        log.info("agent and worker (%d x %d threads) ready; log %s", self.processes,
                 self.threads, self.log)
        return self

    def __exit__(self, *exc_info):
        for process in (self._agent, self._worker):
            if process and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self._agent, self._worker):
            if process:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        rabbitmqctl("delete_vhost", self.vhost)

    def _start(self, output, *command):
        return subprocess.Popen([DROPIMPORT, *command], env=self.env, stdout=output,
                                stderr=subprocess.STDOUT)

    def _check_running(self):
        for name, process in (("agent", self._agent), ("worker", self._worker)):
            if process.poll() is not None:
                raise BenchError(f"the {name} exited ({process.returncode}); see {self.log}")

    def _wait_until_ready(self, timeout=60):
        """Until the FTP port answers and every worker process said it is ready."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_running()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if self.log.read_text("utf-8", "replace").count(READY) >= self.processes:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"the agent or the worker did not start; see {self.log}")
            time.sleep(0.1)

    def upload(self, account, path, name):
        """Upload the file at `path` as `name` over FTP, logged in as `account`."""
        with open(path, "rb") as file:
            sha256 = hashlib.file_digest(file, "sha256").hexdigest()
        started_at = datetime.now(UTC)
        try:
            with FTP(timeout=FTP_TIMEOUT) as ftp, open(path, "rb") as file:
                ftp.connect("127.0.0.1", self.port)
                ftp.login(account, PASSWORD)
                ftp.storbinary(f"STOR {name}", file)  # returns on the 226 reply
                replied_at = datetime.now(UTC)
        except all_errors as error:
            raise BenchError(f"upload of {name} by {account}: {error}") from error
        return Upload(account, sha256, started_at, replied_at)

    def wait_for_imports(self, count, patience):
        """The finished import records once there are `count` of them, or those there are when
        none finished for `patience` seconds."""
        seen, progress = 0, time.monotonic()
        while True:
            records = self.database.finished_imports()
            if len(records) >= count:
                return records
            if len(records) > seen:
                seen, progress = len(records), time.monotonic()
            elif time.monotonic() - progress > patience:
                log.warning("%d imports of %d finished; none for %d s", seen, count, patience)
                return records
            self._check_running()
            time.sleep(POLL)

    def agent_rss_mb(self):
        """The agent's peak RSS (VmHWM) so far, in MB."""
        return peak_rss_mb(self._agent.pid)
