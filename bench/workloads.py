"""The issue's workloads: what each loads, from which state, and its figure against its target.

Every import goes through the worker's real code path (the Importer's run on a spooled file)
in a process of its own; W1-W3 load the same file with the COPY baseline, from the same state,
in the same run. Targets are reported, never asserted: they are for the 2-core machine.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from .report import Result

log = logging.getLogger(__name__)

#: W3: the share of its rows a nightly re-upload changes.
NIGHTLY_CHANGES = 0.02
#: W5: the big base is spread over this many other accounts.
OTHER_ACCOUNTS = 10
#: M: the larger file, in multiples of N.
MEMORY_FACTOR = 5
MAX_RSS_MB = 150
BASELINE = "baseline: COPY + upsert"


@dataclass(frozen=True)
class Workload:
    """`measure(rig)` returns its runs, main run first; `verdict(runs)` is (ratio, met)."""

    id: str
    name: str
    target: str
    measure: Callable | None = None
    verdict: Callable | None = None
    reason: str | None = None  # why it is not run


def faster(threshold):
    """The verdict of a worker run against its baseline: speed ratio >= `threshold`."""

    def verdict(runs):
        run, base = runs
        ratio = run.rows_per_s / base.rows_per_s
        return ratio, ratio >= threshold

    return verdict


def first_import(rig):
    """W1: N rows into an empty account."""
    path = rig.file(rig.rows)
    rig.empty()
    run = rig.import_file("worker", path, tag="W1")
    rig.empty()
    return run, rig.baseline(BASELINE, path)


def half_new(rig):
    """W2: N rows, the first N/2 already stored with other values."""
    path = rig.file(rig.rows, changed=1.0)
    rig.prepare(rig.file(rig.rows // 2))
    run = rig.import_file("worker", path, tag="W2")
    rig.restore()
    return run, rig.baseline(BASELINE, path)


def nightly(rig):
    """W3: the N rows stored again, 2% of them changed."""
    path = rig.file(rig.rows, changed=NIGHTLY_CHANGES)
    rig.prepare(rig.file(rig.rows))
    run = rig.import_file("worker", path, tag="W3")
    rig.restore()
    return run, rig.baseline(BASELINE, path)


def big_base(rig):
    """W5: N/10 rows into an empty database, then beside many other accounts' contacts."""
    path = rig.file(max(rig.rows // 10, 1))
    rig.empty()
    empty = rig.import_file("same, into an empty database", path, tag="W5-empty")
    rig.load_other_accounts(rig.big_base, OTHER_ACCOUNTS)
    big = rig.import_file(f"worker, beside {rig.big_base:,} contacts", path, tag="W5-big")
    return big, empty


def slowdown(runs):
    big, empty = runs
    ratio = big.seconds / empty.seconds
    return ratio, ratio <= 1.5


def memory(rig):
    """M: the worker's peak RSS on 5N rows, then on N."""
    runs = []
    for factor in (MEMORY_FACTOR, 1):
        rig.empty()
        path = rig.file(rig.rows * factor)
        runs.append(rig.import_file(f"on {factor}N rows", path, tag=f"M-{factor}N"))
    return tuple(runs)


def steady_memory(runs):
    big, small = runs
    ratio = big.peak_rss_mb / small.peak_rss_mb
    return ratio, max(big.peak_rss_mb, small.peak_rss_mb) < MAX_RSS_MB and ratio <= 1.15


def sqlite(rig):
    """S: W1 on the embedded default SQLite."""
    rig.empty()
    return (rig.import_file("worker on SQLite", rig.file(rig.rows), sqlite=True, tag="S"),)


def sqlite_speed(runs):
    return None, runs[0].rows_per_s >= 50_000


WORKLOADS = (
    Workload("W1", "first import", ">= 1.0x baseline", first_import, faster(1.0)),
    Workload("W2", "half new", ">= 0.9x baseline", half_new, faster(0.9)),
    Workload("W3", "nightly re-upload", ">= 2.5x baseline", nightly, faster(2.5)),
    Workload("W4", "latency over FTP", "", reason=(
        "for later (issue): needs the FTP agent and the broker end to end")),
    Workload("W5", "big base", "<= 1.5x time on empty db", big_base, slowdown),
    Workload("W6", "fan-in", "", reason=(
        "for later (issue): many accounts' files at once, over several workers")),
    Workload("M", "memory", f"< {MAX_RSS_MB} MB, 5N within 15% of N", memory, steady_memory),
    Workload("S", "SQLite", ">= 50,000 rows/s", sqlite, sqlite_speed),
)


def select(only=None):
    """The workloads named in `only` ("W1,W3"), in the issue's order; all when None."""
    if not only:
        return WORKLOADS
    wanted = {name.strip().upper() for name in only.split(",") if name.strip()}
    unknown = wanted - {w.id for w in WORKLOADS}
    if unknown:
        known = ", ".join(w.id for w in WORKLOADS)
        raise ValueError(f"unknown workload(s) {', '.join(sorted(unknown))}: choose from {known}")
    return tuple(w for w in WORKLOADS if w.id in wanted)


def run(workload, rig):
    """Measure `workload` on `rig` (or note why it is not run); return its Result."""
    if workload.reason:
        return Result(workload.id, workload.name, workload.target, reason=workload.reason)
    log.info("%s %s", workload.id, workload.name)
    runs = tuple(workload.measure(rig))
    ratio, met = workload.verdict(runs)
    return Result(workload.id, workload.name, workload.target, runs, ratio, met)
