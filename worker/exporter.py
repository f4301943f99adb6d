"""One run of an export: the account's contacts, read in one snapshot, written to a file that
appears complete where the customer reads it, or nowhere.

    export event (the agent's schedule, or `dropimport export run`)
      -> the run recorded running, one attempt more        (a run that ended is not run again)
      -> export-work/<run>.part: the lines, streamed       (out of every account's root)
      -> hosted: renamed into <root>/exports/, then the marker; files past `keep` deleted
         pushed: uploaded under a temporary name and renamed on the customer's server, marker
      -> the run recorded done (rows, bytes, snapshot), export_done notified

A worker killed at any step leaves no file but its own .part, which the retry replaces: the
message comes back (RabbitMQ redelivers it), the run is tried again under the same name. A
server that cannot be reached is tried again with backoff (dramatiq's retries); a refused login
or an untrusted server is not, since trying again cannot help and may lock the account out.
"""

import gzip
import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from dropimport import credentials, remote
from dropimport.accounts import AccountError, Registry, source_with_defaults
from schemas import ExportEvent, validate
from schemas.settings import Home

from . import exports, failure
from .exports import Lines
from .notify import Silent
from .runtime import metrics
from .write.locks import AccountBusy
from .write.store import Store

log = logging.getLogger(__name__)


class TryAgain(Exception):
    """The run failed this time, and may work later: the actor has it retried."""


def destination(export: Mapping[str, Any], file: str = "") -> str:
    """Where a run's `file` goes (without one: the folder), as records and notices say it."""
    to = export["to"]
    if to == "hosted":
        return f"exports/{file}".rstrip("/")
    return remote.url_of({**to, "file": file}).rstrip("/")


class Exporter:
    """Runs export events against a Store. `connect(server, password)` opens a Remote (tests
    may wrap it); `secret_key` decrypts the servers' passwords (DROPIMPORT_SECRET_KEY)."""

    def __init__(self, home: Home, store: Store, notifications: Any = None,
                 secret_key: str | None = None,
                 connect: Callable[[dict[str, Any], str], remote.Remote] = remote.connect,
                 environ: Mapping[str, str] | None = None) -> None:
        self.home = home
        self.store = store
        self.registry = Registry(home)
        self.notifications = notifications or Silent()
        self.secret_key = secret_key
        self.connect = connect
        self.environ = environ

    def run(self, event: ExportEvent, last_attempt: bool = True) -> dict[str, Any] | None:
        """Run the export event once; return its run record, None if it had ended before.

        Raises TryAgain when it failed and may work later (unless `last_attempt`: then it is
        recorded failed), AccountBusy when an import of the account, or another attempt of
        the export, is running."""
        validate("export-event", event)
        account, name = event["account"], event["export"]
        # One run of an export at a time, across every worker: a message delivered twice
        # waits, then finds its run done.
        with self.store.account_lock(f"export {account} {name}", wait=False):
            try:
                export = self.registry.export(account, name)
            except AccountError as error:
                return self._gone(event, str(error))
            file = exports.file_name(export, datetime.fromisoformat(event["planned_for"]))
            run = self.store.start_export_run(event, destination(export, file))
            if run is None:
                log.info("export run %s already ended: not run again", event["run_id"])
                return None
            part = self.home.export_work / f"{event['run_id']}.part"
            try:
                done = self._export(event, export, file, part)
            except (remote.RemoteError, credentials.CredentialError, OSError) as error:
                return self._failed(event, error, last_attempt)
            except AccountBusy:
                # An import of the account runs: the run waits for it, not counted a try.
                self.store.end_export_run(event["run_id"], "queued",
                                          attempts=run["attempts"] - 1)
                raise
            finally:
                part.unlink(missing_ok=True)
        run = self.store.end_export_run(event["run_id"], "done", error=None, file=file, **done)
        log.info("export %s of account %s: %d contacts, %d bytes to %s", name, account,
                 run["rows"], run["bytes"], run["destination"])
        return self._ended(run)

    def _export(self, event: ExportEvent, export: dict[str, Any], file: str,
                part: Path) -> dict[str, Any]:
        account = event["account"]
        templates = self.registry.templates(account)
        columns = exports.columns(export, templates)
        since = (self.store.export_since(account, event["export"])
                 if export["only"] == "changed" else None)
        part.parent.mkdir(parents=True, exist_ok=True)
        lines = Lines(export, columns)
        with open(part, "wb") as raw:
            packed = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) \
                if export["gzip"] else None
            write = packed.write if packed else raw.write
            write(lines.header())
            rows, snapshot = self.store.export_contacts(account, columns, export["only"], since,
                                                        lines, write)
            if packed:
                packed.close()  # its last block and trailer; `raw` stays open
            raw.flush()
            os.fsync(raw.fileno())  # on disk before it is renamed, and the run recorded done
        size = part.stat().st_size
        if export["to"] == "hosted":
            self._hosted(account, export, file, part)
        else:
            self._pushed(export, file, part)
        return {"rows": rows, "bytes": size, "since": since, "snapshot": snapshot}

    def _hosted(self, account: str, export: dict[str, Any], file: str, part: Path) -> None:
        folder = self.home.exports(account)
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(part, folder / file)
        if export.get("marker"):
            (folder / (file + export["marker"])).touch()
        for old in exports.retention(export, os.listdir(folder)):
            (folder / old).unlink(missing_ok=True)
            log.info("export %s of account %s: %s deleted (keep %d)", file, account, old,
                     export["keep"])

    def _pushed(self, export: dict[str, Any], file: str, part: Path) -> None:
        server = source_with_defaults(export["to"])
        password = credentials.reveal(server["secret"], self.secret_key, self.environ)
        with self.connect(server, password) as client:
            client.upload(part, file)
            if export.get("marker"):
                marker = part.with_suffix(".marker")
                marker.touch()
                try:
                    client.upload(marker, file + export["marker"])
                finally:
                    marker.unlink(missing_ok=True)

    def _failed(self, event: ExportEvent, error: Exception,
                last_attempt: bool) -> dict[str, Any]:
        reason = failure.reason(error)
        hopeless = isinstance(error, remote.LoginRefused | remote.Untrusted
                              | credentials.CredentialError)
        if not (last_attempt or hopeless):
            self.store.end_export_run(event["run_id"], "retrying", error=reason)
            log.warning("export run %s failed (%s); it will be tried again", event["run_id"],
                        reason)
            raise TryAgain(reason)
        run = self.store.end_export_run(event["run_id"], "failed", error=reason)
        log.error("export run %s failed: %s", event["run_id"], reason)
        return self._ended(run)

    def _ended(self, run: dict[str, Any]) -> dict[str, Any]:
        metrics.exported(run)
        self.notifications.exported(run)
        return run

    def _gone(self, event: ExportEvent, why: str) -> dict[str, Any] | None:
        """The export (or its account) was removed after the run was planned."""
        log.warning("export run %s not run: %s", event["run_id"], why)
        if self.store.start_export_run(event, "-") is None:
            return None
        return self.store.end_export_run(event["run_id"], "failed", error=why)
