"""One measured load, in a process of its own: `python -m bench.run_one SPEC`.

SPEC is JSON: {"kind": "import", "home", "database_url", "event"[, "profile",
"reader_processes"]} runs the
worker's Importer on a spooled file; {"kind": "baseline", "table", "database_url", "account",
"path", "names", "encoding", "rows"} runs a baseline, into the worker's `contacts` (table
"contacts") or its lean table ("lean"), counting the file's `rows`; {"kind": "rollback",
"home", "database_url", "import_id"} rolls an import back. The line printed is JSON:
seconds, peak RSS and what the load did. The peak RSS is this process's own, so it is the
worker's and not the benchmark's.
"""

import cProfile
import json
import resource
import sys
import time
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


def import_file(spec):
    """The Importer's run on the spooled file of `spec["event"]`, as the worker runs it."""
    # Imported here: the baseline's process loads neither the worker nor SQLAlchemy.
    from schemas.settings import Home
    from worker.importer import Importer
    from worker.record import COUNTS
    from worker.runtime import interpreter
    from worker.write.store import Store

    store = Store(spec["database_url"])
    # None: the worker's default, a process per core but one
    importer = Importer(Home(Path(spec["home"])), store,
                        reader_processes=spec.get("reader_processes"))
    interpreter.tune()  # as each worker process does when it boots
    profile = cProfile.Profile() if spec.get("profile") else None
    idle = peak_rss_mb()
    if profile:
        profile.enable()
    started = time.perf_counter()
    record = importer.run(spec["event"])
    seconds = time.perf_counter() - started
    if profile:
        profile.disable()
        profile.dump_stats(spec["profile"])
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


KINDS = {"import": import_file, "baseline": baseline, "rollback": roll_back}


def main(argv):
    spec = json.loads(argv[1])
    measured = KINDS[spec["kind"]](spec)
    print(json.dumps({**measured, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    main(sys.argv)
