"""One measured load, in a process of its own: `python -m bench.run_one SPEC`.

SPEC is JSON: {"kind": "import", "home", "database_url", "event"[, "profile",
"reader_processes"]} runs the
worker's Importer on a spooled file; {"kind": "baseline", "table", "database_url", "account",
"path", "names", "encoding", "rows"} runs a baseline, into the worker's `contacts` (table
"contacts") or its lean table ("lean"), counting the file's `rows`; {"kind": "rollback",
"home", "database_url", "import_id"} rolls an import back; {"kind": "export", "home",
"database_url", "account", "export", "planned_for"[, "profile"]} runs the worker's Exporter
on the event of that run of an export; {"kind": "dump", "database_url", "account",
"columns", "stored", "path"} writes the export's baseline (baseline.dump). The line printed
is JSON: seconds, peak RSS and what the load did. The peak RSS is this process's own, so it
is the worker's and not the benchmark's.
"""

import cProfile
import json
import os
import resource
import sys
import time
from datetime import datetime
from pathlib import Path


def peak_rss_mb(pid="self"):
    """The peak resident set size of process `pid` (by default this one), in MB.

    Linux's ru_maxrss would carry the parent's peak over the exec (the benchmark's argon2 hash
    alone takes 64 MB): VmHWM is the peak of this program's own memory.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except FileNotFoundError:  # not Linux: ru_maxrss is in bytes on macOS, KiB elsewhere
        if pid != "self":
            raise
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def timed(spec, load):
    """`load()`'s result and seconds, as the worker runs it: the interpreter tuned as each
    worker process is when it boots, a cProfile written to `spec["profile"]` if named; and
    the process's peak RSS before it, once loaded."""
    from worker.runtime import interpreter

    interpreter.tune()
    profile = cProfile.Profile() if spec.get("profile") else None
    idle = peak_rss_mb()
    if profile:
        profile.enable()
    started = time.perf_counter()
    result = load()
    seconds = time.perf_counter() - started
    if profile:
        profile.disable()
        profile.dump_stats(spec["profile"])
    return result, seconds, idle


def import_file(spec):
    """The Importer's run on the spooled file of `spec["event"]`, as the worker runs it."""
    # Imported here: the baseline's process loads neither the worker nor SQLAlchemy.
    from schemas.settings import Home
    from worker.importer import Importer
    from worker.record import COUNTS
    from worker.write.store import Store

    store = Store(spec["database_url"])
    # None: the worker's default, a process per core but one. The secret key, as the worker
    # reads it: it opens the account's OpenPGP key.
    importer = Importer(Home(Path(spec["home"])), store,
                        reader_processes=spec.get("reader_processes"),
                        secret_key=os.environ.get("DROPIMPORT_SECRET_KEY"))
    record, seconds, idle = timed(spec, lambda: importer.run(spec["event"]))
    store.close()
    return {"seconds": seconds, "idle_rss_mb": idle, "status": record["status"],
            "reason": record["reason"], "counts": {key: record[key] for key in COUNTS}}


def baseline(spec):
    """A baseline on the file at `spec["path"]`: its rows are the file's (as the worker's
    are), `loaded` those it inserted or updated."""
    from .baseline import load, load_lean

    run = load_lean if spec["table"] == "lean" else load
    idle = peak_rss_mb()
    started = time.perf_counter()
    loaded = run(spec["database_url"], spec["account"], spec["path"], spec["names"],
                 spec["encoding"])
    return {"seconds": time.perf_counter() - started, "idle_rss_mb": idle, "status": "imported",
            "reason": None, "counts": {"rows": spec["rows"], "loaded": loaded}}


def roll_back(spec):
    """The rollback of the import `spec["import_id"]`, as `dropimport imports rollback` does
    it; its rows are the contacts it deleted and restored."""
    from schemas.settings import Home
    from worker.importer import Importer
    from worker.write.store import Store

    store = Store(spec["database_url"])
    importer = Importer(Home(Path(spec["home"])), store)
    idle = peak_rss_mb()
    started = time.perf_counter()
    outcome = importer.roll_back(spec["import_id"], "bench")
    seconds = time.perf_counter() - started
    store.close()
    return {"seconds": seconds, "idle_rss_mb": idle, "status": "rolled_back", "reason": None,
            "counts": {"rows": outcome.deleted + outcome.restored, **outcome.as_dict()}}


def export(spec):
    """The Exporter's run of the export `spec["export"]` of `spec["account"]` planned for
    `spec["planned_for"]`, as the worker runs its event; its rows and bytes are the file's."""
    from schemas import export_event
    from schemas.settings import Home
    from worker.exporter import Exporter
    from worker.write.store import Store

    store = Store(spec["database_url"])
    exporter = Exporter(Home(Path(spec["home"])), store)
    event = export_event(spec["account"], spec["export"],
                         datetime.fromisoformat(spec["planned_for"]))
    record, seconds, idle = timed(spec, lambda: exporter.run(event))
    store.close()
    if record is None:
        return {"status": "not run", "reason": f"export run {event['run_id']} had ended"}
    counts = {key: record[key] for key in ("rows", "bytes", "file", "since", "snapshot")}
    return {"seconds": seconds, "idle_rss_mb": idle, "status": record["status"],
            "reason": record["error"], "counts": counts}


def dump(spec):
    """The export's baseline: the account's contacts written by the database's own COPY to
    the file at `spec["path"]`."""
    from .baseline import dump as write

    idle = peak_rss_mb()
    started = time.perf_counter()
    rows, fsync = write(spec["database_url"], spec["account"], spec["columns"],
                        spec["stored"], spec["path"])
    seconds = time.perf_counter() - started
    counts = {"rows": rows, "bytes": Path(spec["path"]).stat().st_size,
              "fsync_seconds": round(fsync, 3)}
    return {"seconds": seconds, "idle_rss_mb": idle, "status": "done", "reason": None,
            "counts": counts}


KINDS = {"import": import_file, "baseline": baseline, "rollback": roll_back, "export": export,
         "dump": dump}


def main(argv):
    spec = json.loads(argv[1])
    measured = KINDS[spec["kind"]](spec)
    print(json.dumps({**measured, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main(sys.argv)
