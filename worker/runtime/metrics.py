"""The worker's Prometheus metrics, in prometheus_client's default registry.

dramatiq forks its worker processes, so the metrics are kept in prometheus_client's
multiprocess mode: `dropimport worker` points PROMETHEUS_MULTIPROC_DIR at a fresh directory of
its own (`own_folder`) before any process imports prometheus_client, and dramatiq's Prometheus
middleware serves every process's metrics, ours and its own (`dramatiq_*`), on one port,
DROPIMPORT_WORKER_METRICS_PORT.
No metric is labelled by account: with thousands of accounts, the series would be too many.
"""

import os
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from schemas import FileEvent

from ..record import FINAL, ImportRecord

#: From a few rows to several million.
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)
#: Waiting for a worker: from at once to a backlog of hours.
WAIT_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
#: The row counts of an import record, and the outcome each counts.
OUTCOMES = {"created": "created", "updated": "updated", "unchanged": "unchanged",
            "skipped": "skipped", "rejected_rows": "rejected"}
#: The multiprocess directory of one `dropimport worker`, under $TMPDIR: its port, its pid.
FOLDER = "dropimport-worker-metrics-{port}-{pid}"

IMPORTS = Counter("dropimport_imports", "Imports that reached a final status.", ["status"])
ROWS = Counter("dropimport_import_rows", "Rows of the finished imports, by outcome.", ["outcome"])
DURATION = Histogram("dropimport_import_duration_seconds",
                     "Time from the start to the end of an import.", buckets=DURATION_BUCKETS)
WAIT = Histogram("dropimport_import_wait_seconds",
                 "Time from the upload (received_at) to the start of its import.",
                 buckets=WAIT_BUCKETS)
RUNNING = Gauge("dropimport_imports_running", "Imports under way now.",
                multiprocess_mode="livesum")
EXPORTS = Counter("dropimport_exports", "Export runs that ended.", ["status"])
EXPORT_ROWS = Counter("dropimport_export_rows", "Contacts written by the export runs done.")
EXPORT_BYTES = Counter("dropimport_export_bytes", "Bytes of the files of the export runs done.")

for _status in (*FINAL, "held"):
    if _status != "rolled_back":  # not how an import run ends: a later deed of an operator
        IMPORTS.labels(_status)  # every series shows from the start, at 0
for _outcome in OUTCOMES.values():
    ROWS.labels(_outcome)
for _status in ("done", "failed"):
    EXPORTS.labels(_status)


def started(event: FileEvent) -> None:
    """Count an import that starts: how long its file waited, and that it runs."""
    received = datetime.fromisoformat(event["received_at"])
    WAIT.observe(max((datetime.now(UTC) - received).total_seconds(), 0))
    RUNNING.inc()


def stopped() -> None:
    """The import started last in this thread runs no more (finished, or to be retried)."""
    RUNNING.dec()


def concluded(record: ImportRecord, seconds: float) -> None:
    """Count a finished import: its status, its rows by outcome, how long it took."""
    IMPORTS.labels(record["status"]).inc()
    counts: Mapping[str, Any] = record  # read by the names of OUTCOMES
    if record["status"] not in ("previewed", "held"):  # computed, not applied
        for count, outcome in OUTCOMES.items():
            ROWS.labels(outcome).inc(counts.get(count) or 0)
    DURATION.observe(seconds)


def own_folder(root: Path, port: int, pid: int) -> Path:
    """A new empty directory in `root` for the metrics the worker `pid` serves on `port`.

    prometheus_client's multiprocess mode wants it empty when the worker starts. The
    directories of workers that are gone are removed; a running worker's are never touched:
    its counts would drop to nothing.
    """
    clear_gone(root)
    folder = root / FOLDER.format(port=port, pid=pid)
    shutil.rmtree(folder, ignore_errors=True)  # a process gone had the same pid
    folder.mkdir(mode=0o700)
    return folder


def clear_gone(root: Path) -> None:
    """Remove the metrics directories in `root` whose worker is gone."""
    for folder in root.glob(FOLDER.format(port="*", pid="*")):
        pid = folder.name.rpartition("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    return True


def exported(run: dict[str, Any]) -> None:
    """Count an export run that ended: done (its rows and bytes) or failed."""
    EXPORTS.labels(run["status"]).inc()
    if run["status"] == "done":
        EXPORT_ROWS.inc(run["rows"])
        EXPORT_BYTES.inc(run["bytes"])
