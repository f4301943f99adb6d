"""The whole system as real processes, for the workloads over FTP and SFTP (W4, W6, F).

`dropimport agent` and `dropimport worker` run on a home of their own, a RabbitMQ vhost of
their own (made with rabbitmqctl, deleted at the end) and the benchmark's database, started
and stopped by the tests' harness (tests/harness.py); ftplib clients, or OpenSSH's sftp
(sftp.py), upload as customers do, and the import records say when each import committed.
"""

import hashlib
import logging
import time
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from ftplib import FTP, all_errors
from typing import NamedTuple

from tests import harness

from . import sftp
from .errors import BenchError
from .run_one import peak_rss_mb

log = logging.getLogger(__name__)

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


class System:
    """The agent and a worker of `processes` x `threads` on `home`, from `with` to its end.

    `accounts` are the accounts of the home (FTP login: the account's name, password PASSWORD;
    over SFTP, the same login with the account's key); they all upload from 127.0.0.1, so the
    agent lets that many connections in from one address.
    """

    def __init__(self, home, database, accounts, processes, threads):
        self.home = home
        self.database = database
        self.accounts = accounts
        self.processes = processes
        self.threads = threads
        self.log = home.root.with_suffix(".log")
        self.known_hosts = home.root.with_name(f"{home.root.name}-known_hosts")
        self._system = self._agent = None  # the harness's System, once its vhost exists
        self._exit = ExitStack()

    def __enter__(self):
        with self._reported(), ExitStack() as stack:
            broker_url = stack.enter_context(harness.rabbitmq_vhost("dropimport-bench"))
            # Metrics served as in production, on ports of this run's own (the harness's).
            connections = str(max(len(self.accounts), 20))
            self._system = harness.System(
                self.home.root, broker_url, self.database.url, log=self.log,
                env={"DROPIMPORT_FTP_MAX_CONNECTIONS_PER_IP": connections})
            stack.callback(self._stop)
            self._agent, _worker = self._system.start(
                [harness.DROPIMPORT, "agent"],
                [harness.DROPIMPORT, "worker", "--processes", str(self.processes), "--threads",
                 str(self.threads)], wait_for_ftp=False)
            self._system.wait_until_ready(timeout=60, ready=self._workers_ready)
            self._exit = stack.pop_all()
        log.info("agent and worker (%d x %d threads) ready; log %s", self.processes,
                 self.threads, self.log)
        return self

    def __exit__(self, *exc_info):
        with self._reported():
            self._exit.close()

    @contextmanager
    def _reported(self):
        """What the harness finds wrong, as the benchmark's error."""
        try:
            yield
        except harness.Failed as error:
            raise BenchError(f"{error}; see {self.log}") from error

    def _workers_ready(self):
        """Whether every worker process said it is ready."""
        return self.log.read_text("utf-8", "replace").count(READY) >= self.processes

    def _stop(self):
        """Stop the agent and the worker: one that had to be killed is said, the figures kept."""
        try:
            self._system.close()
        except harness.Failed as error:
            log.warning("%s; see %s", error, self.log)

    def _check_running(self):
        if exited := self._system.exited():
            name, code = exited[0].args[1], exited[0].returncode
            raise BenchError(f"the {name} exited ({code}); see {self.log}")

    def upload(self, account, path, name):
        """Upload the file at `path` as `name` over FTP, logged in as `account`."""
        with open(path, "rb") as file:
            sha256 = hashlib.file_digest(file, "sha256").hexdigest()
        started_at = datetime.now(UTC)
        try:
            with FTP(timeout=FTP_TIMEOUT) as ftp, open(path, "rb") as file:
                ftp.connect("127.0.0.1", self._system.port)
                ftp.login(account, PASSWORD)
                ftp.storbinary(f"STOR {name}", file)  # returns on the 226 reply
                replied_at = datetime.now(UTC)
        except all_errors as error:
            raise BenchError(f"upload of {name} by {account}: {error}") from error
        return Upload(account, sha256, started_at, replied_at)

    def put(self, account, key, path, name, alone=False):
        """Put the file at `path` as `name` over SFTP with OpenSSH's sftp, logged in as
        `account` with the private key `key` (an sftp.Put; `alone`: see sftp.put)."""
        return sftp.put(self._system.sftp_port, account, key, path, name, self.known_hosts,
                        alone)

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

    def agent_cpu_seconds(self):
        """The agent's CPU seconds (user and system, every thread) so far."""
        return sftp.cpu_seconds(self._agent.pid)
