"""The issue's workloads: what each loads, from which state, and its figure against its target.

Every import goes through the worker's real code path (the Importer's run on a spooled file)
in a process of its own; W1-W3 and A load the same file with both baselines (the COPY baseline
into the worker's table, the lean one into a table of its own), each from the same state, in
the same run. W1-W3, M and Z load the run's dataset (mixed by default), the others the plain
one (datasets.py). W4 and W6 go through the whole system instead: FTP clients, the real agent,
RabbitMQ and the real worker (system.py); F too, over SFTP, beside OpenSSH's own server
(sftp.py), and only when named: it measures transfers, not imports. X measures exports: the
worker's Exporter on an export event, in a process of its own, beside the database's own COPY
of the same columns to a file. Z imports W1's file uploaded compressed (gzip), compressed
and encrypted (OpenPGP, to an account's key), and plain. Targets are reported, never
asserted: they are for the 2-core machine.
"""

import hashlib
import logging
import math
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from . import sftp
from .errors import BenchError
from .report import Result, Run
from .rig import ACCOUNT

log = logging.getLogger(__name__)

#: J: the most a rollback may take, in times its import's; a preview may take its import's
#: time, within the noise of two runs.
MAX_ROLLBACK = 2.0
PREVIEW_SLACK = 1.05
#: W3: the share of its rows a nightly re-upload changes.
NIGHTLY_CHANGES = 0.02
#: W5: the big base is spread over this many other accounts.
OTHER_ACCOUNTS = 10
#: M: the larger file, in multiples of N; X: the larger account.
MEMORY_FACTOR = 5
MAX_RSS_MB = 150
#: M, X: the most a peak RSS may grow from N to 5N rows. A process that streams takes the
#: same memory whatever their number, give or take the allocator's noise (a few MB of a
#: process of 80 to 150); one that held its rows would take hundreds of MB more.
MAX_GROWTH = 1.15
FLAT = f"5N within {MAX_GROWTH - 1:.0%} of N"
#: D: the rows of its file of one e-mail, in multiples of N.
#: The reader processes of R's runs, the first one the figure's reference.
READER_PROCESSES = (1, 2, 4)
ONE_EMAIL_FACTOR = 2
ONE_EMAIL = "same.person@example.com"
#: W4: the rows of each file uploaded, and its targets in seconds from 226 to commit.
LATENCY_ROWS = 100
P50_S, P99_S = 0.3, 1.0
#: W4, W6: how long to wait with no import finishing before the figures are taken as they are.
PATIENCE_S = 300
#: F: a megabyte of its speeds (decimal, as network speeds are; Z's file sizes too), the size
#: of each of its concurrent uploads, and its target: our speed over OpenSSH's sftp-server's.
MB = 1_000_000
MIB = 1 << 20
SFTP_RATIO = 0.5
BASELINE = "baseline: COPY + upsert"
LEAN = "lean baseline: COPY + upsert, one key"
#: X: the export it runs, as a customer sets it: every night, into the account's exports/,
#: the contacts changed since its last run (its first run: all of them), in CSV.
EXPORT = "nightly"
EXPORT_SETTINGS = {"schedule": "0 6 * * *", "to": "hosted", "only": "changed"}
#: X: the planned time of an export's first run; each next one a day later.
FIRST_RUN = datetime(2026, 12, 7, 6, tzinfo=UTC)
#: X: the account of 5N contacts, made in SQL from the first account's.
BIG_ACCOUNT = f"{ACCOUNT}-{MEMORY_FACTOR}n"
#: X: its targets: the export's speed over the COPY's, a changed run's time over a full one's.
EXPORT_RATIO = 0.5
CHANGED_SHARE = 0.1
COPY_TO_FILE = "baseline: COPY (SELECT ...) TO STDOUT, to a file"
#: Z: the most the import of a compressed upload may take, then of a compressed and
#: encrypted one, in times the same file's uploaded plain.
MAX_GZIP, MAX_ENCRYPTED = 1.1, 1.3
#: Z: the account whose template takes only files encrypted to its OpenPGP key.
ENCRYPTING_ACCOUNT = f"{ACCOUNT}-pgp"


@dataclass(frozen=True)
class Workload:
    """`measure(rig)` returns its runs, main run first; `verdict(runs)` is (ratio, met);
    `lean(runs)`, if given, the main run's speed over the lean baseline's. `default`: run
    when no workload is named."""

    id: str
    name: str
    target: str
    measure: Callable
    verdict: Callable
    lean: Callable | None = None
    default: bool = True


def faster(threshold):
    """The verdict of a worker run against its baseline: speed ratio >= `threshold`."""

    def verdict(runs):
        run, base, _lean = runs
        ratio = run.rows_per_s / base.rows_per_s
        return ratio, ratio >= threshold

    return verdict


def versus_lean(runs):
    run, _base, lean = runs
    return run.rows_per_s / lean.rows_per_s


def baselines(rig, file, start):
    """Both baselines' runs on `file`, each from the state `start()` puts the database in."""
    runs = []
    for label, lean in ((BASELINE, False), (LEAN, True)):
        start()
        runs.append(rig.baseline(label, file, lean=lean))
    return tuple(runs)


def into_empty(rig, file, tag):
    """The worker's, then both baselines' runs on `file`, each into an empty account."""
    rig.empty()
    run = rig.import_file("worker", file, tag=tag)
    return run, *baselines(rig, file, rig.empty)


def first_import(rig):
    """W1: N rows into an empty account."""
    return into_empty(rig, rig.file(rig.rows, dataset=rig.dataset), "W1")


def half_new(rig):
    """W2: N rows, the first N/2 already stored with other values."""
    file = rig.file(rig.rows, changed=1.0, dataset=rig.dataset)
    rig.prepare(rig.file(rig.rows // 2, dataset=rig.dataset))
    run = rig.import_file("worker", file, tag="W2")
    return run, *baselines(rig, file, rig.restore)


def nightly_files(rig):
    """W3's files: the N rows stored, then the same with 2% of them changed."""
    return (rig.file(rig.rows, dataset=rig.dataset),
            rig.file(rig.rows, changed=NIGHTLY_CHANGES, dataset=rig.dataset))


def nightly(rig):
    """W3: the N rows stored again, 2% of them changed."""
    stored, file = nightly_files(rig)
    rig.prepare(stored)
    run = rig.import_file("worker", file, tag="W3")
    return run, *baselines(rig, file, rig.restore)


def safety_net(rig):
    """J: W2's file previewed, then imported, then the import rolled back; the journal's
    size on disk before the rollback is the import run's `journal_mb`."""
    file = rig.file(rig.rows, changed=1.0, dataset=rig.dataset)
    rig.prepare(rig.file(rig.rows // 2, dataset=rig.dataset))
    preview = rig.import_file("preview", file, tag="J-preview", preview=True)
    rig.database.settle()  # the preview's rolled back rows: no vacuum left to the import
    run = rig.import_file("import", file, tag="J")
    run.counts["journal_mb"] = round(rig.database.journal_mb(), 1)
    log.info("the journal of W2's import: %.1f MB on disk", run.counts["journal_mb"])
    rig.database.settle()
    rollback = rig.roll_back("rollback", run.counts["import_id"])
    return rollback, run, preview


def safety_verdict(runs):
    """J: the rollback's time over the import's (<= 2), and the preview no slower than it."""
    rollback, run, preview = runs
    ratio = rollback.seconds / run.seconds
    return ratio, ratio <= MAX_ROLLBACK and preview.seconds <= run.seconds * PREVIEW_SLACK


def plain_first_import(rig):
    """A: W1 on the plain file, whatever the run's dataset: comparable with earlier runs."""
    return into_empty(rig, rig.file(rig.rows), "A")


def readers(rig):
    """R: W1 with its rows converted in 1, 2 and 4 processes (DROPIMPORT_READER_PROCESSES)."""
    file = rig.file(rig.rows, dataset=rig.dataset)
    runs = []
    for processes in READER_PROCESSES:
        rig.empty()
        runs.append(rig.import_file(f"{processes} reader process{'es' if processes > 1 else ''}",
                                    file, tag=f"R{processes}", reader_processes=processes))
    return tuple(runs)


def speed_up(runs):
    """The best speed over the speed with one process: shown, no target (cores differ)."""
    return max(run.rows_per_s for run in runs) / runs[0].rows_per_s, None


def big_base(rig):
    """W5: N/10 rows into an empty database, then beside many other accounts' contacts."""
    file = rig.file(max(rig.rows // 10, 1))
    rig.empty()
    empty = rig.import_file("same, into an empty database", file, tag="W5-empty")
    rig.load_other_accounts(rig.big_base, OTHER_ACCOUNTS)
    big = rig.import_file(f"worker, beside {rig.big_base:,} contacts", file, tag="W5-big")
    return big, empty


def slowdown(runs):
    big, empty = runs
    ratio = big.seconds / empty.seconds
    return ratio, ratio <= 1.5


def percentile(values, share):
    """The nearest-rank percentile: the smallest value with at least `share` of them <= it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)), 1) - 1]


def latency(rig):
    """W4: small files uploaded over FTP one by one, each timed from its 226 to its commit.

    The runs are the p50 and the p99 (seconds of one upload); the peak RSS is the agent's.
    """
    rig.empty()
    with rig.system("W4", accounts=1) as system:
        idle = system.agent_rss_mb()
        seconds = []
        for number in range(rig.uploads + 1):  # the first one warms the system up, unmeasured
            upload = system.upload(system.accounts[0], rig.upload_file(LATENCY_ROWS, number),
                                   rig.template["file"])
            records = system.wait_for_imports(number + 1, PATIENCE_S)
            record = next((r for r in records if r.sha256 == upload.sha256), None)
            if record is None or record.status != "imported":
                raise BenchError(f"W4: upload {number} not imported: {record}")
            if number:
                seconds.append((record.finished_at - upload.replied_at).total_seconds())
        peak = system.agent_rss_mb()
    counts = {"uploads": len(seconds), "latencies_ms": [round(s * 1000, 1) for s in seconds]}
    return tuple(
        Run(f"{name} of {len(seconds)} uploads, 226 to commit", LATENCY_ROWS,
            percentile(seconds, share), peak, idle, counts=counts if share == 0.5 else {})
        for name, share in (("p50", 0.5), ("p99", 0.99))
    )


def quick(runs):
    p50, p99 = runs
    return None, p50.seconds <= P50_S and p99.seconds <= P99_S


def fan_in(rig):
    """W6: every account uploads its file over FTP at once; from the first upload started to
    the last import committed. The peak RSS is the agent's."""
    path = rig.file(rig.fan_in_rows).path
    rig.empty()
    with rig.system("W6", accounts=rig.accounts) as system:
        idle = system.agent_rss_mb()

        def upload(account):
            return system.upload(account, path, rig.template["file"])

        with ThreadPoolExecutor(len(system.accounts)) as clients:  # all started together
            uploads = list(clients.map(upload, system.accounts))
        records = system.wait_for_imports(len(uploads), PATIENCE_S)
        peak = system.agent_rss_mb()
    if not records:
        raise BenchError(f"W6: no import finished within {PATIENCE_S} s of the uploads")
    started = min(u.started_at for u in uploads)
    imported = [r for r in records if r.status == "imported" and r.rows == rig.fan_in_rows]
    counts = {
        "accounts": len(uploads), "imported": len(imported),
        "statuses": dict(Counter(r.status for r in records)),
        "uploads_seconds": (max(u.replied_at for u in uploads) - started).total_seconds(),
        "worker_processes": rig.processes, "worker_threads": rig.threads,
    }
    last = max(r.finished_at for r in records)
    label = (f"{len(uploads)} accounts x {rig.fan_in_rows:,} rows, "
             f"worker {rig.processes} x {rig.threads} threads")
    return (Run(label, sum(r.rows for r in imported), (last - started).total_seconds(), peak,
                idle, counts=counts),)


def none_lost(runs):
    counts = runs[0].counts
    return None, counts["imported"] == counts["accounts"]


def sftp_speed(rig):
    """F: a file of `sftp_mb` MB put over SFTP by OpenSSH's sftp into our agent (an upload
    its template expects, imported) and into OpenSSH's own sftp-server, in turns,
    `sftp_tries` times each, the best of each kept; then `sftp_accounts` accounts putting
    1 MiB each at once, timed to the last put returned and to the last import committed.

    Each put is timed from its command, once logged in, to its end (sftp.put): ours replies
    to the file's close once it is handed over to incoming/ (fsynced), not imported. The
    server's CPU is the agent's (every thread), or sshd's and its sessions'. The peak RSS is
    the agent's.
    """
    sshd, sftp_server, installed = sftp.openssh_server()
    big, small = rig.file_of(rig.sftp_mb * MB), rig.file_of(MIB)
    sha256 = _sha256(big.path)
    folder = rig.root / "F-keys"
    folder.mkdir()
    # The big file's account, then the others: a small file after the big one would be
    # refused by the account's max_shrink.
    keys = [sftp.keypair(folder / f"{n:03d}") for n in range(rig.sftp_accounts + 1)]
    name = rig.template["file"]
    system = rig.system("F", len(keys), keys=[f"{key}.pub" for key in keys])
    with system, sftp.Reference(rig.root / "F-openssh", keys[:1], sshd, sftp_server) as openssh:
        idle = system.agent_rss_mb()
        ours, theirs = [], []
        for attempt in range(rig.sftp_tries):
            cpu = system.agent_cpu_seconds()
            put = system.put(system.accounts[0], keys[0], big.path, name, alone=True)
            ours.append((put, system.agent_cpu_seconds() - cpu))
            # The next put, theirs or ours, finds the worker idle.
            _imported(system, attempt + 1, big, sha256, f"F: put {attempt + 1} of {big.path}")
            cpu = openssh.cpu_seconds()
            put = openssh.put(keys[0], big.path, name, alone=True)
            theirs.append((put, openssh.cpu_seconds() - cpu))
        peak = system.agent_rss_mb()
        concurrent = _at_once(system, system.accounts[1:], keys[1:], small, name)
        concurrent_peak = system.agent_rss_mb()
    size = big.path.stat().st_size
    common = {"bytes": size, "tries": rig.sftp_tries, "openssh_server_installed": installed}
    return (
        _put_run("ours, dropimport agent", ours, size, big.rows, "agent", peak, idle,
                 {**common, "best_of": "seconds"}),
        _put_run(f"OpenSSH {Path(sshd).name} + {Path(sftp_server).name}", theirs, size,
                 big.rows, "server", None, None, common),
        *(Run(label, rows, seconds, concurrent_peak, peak, counts=counts)
          for label, rows, seconds, counts in concurrent),
    )


def _sha256(path):
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _imported(system, count, file, sha256, what):
    """Wait for the `count`th import of `file` (the same file each time: the first is
    imported, the others found identical to it, imported too); BenchError if it was not."""
    records = [r for r in system.wait_for_imports(count, PATIENCE_S) if r.sha256 == sha256]
    if len(records) < count or any(r.status != "imported" or r.rows != file.rows
                                   for r in records):
        raise BenchError(f"{what}: not imported: {records}")


def _put_run(server, puts, size, rows, whose, peak, idle, counts):
    """The Run of the fastest of `puts` ((sftp.Put, the server's CPU seconds) each)."""
    best, cpu = min(puts, key=lambda put: put[0].seconds)
    speed = size / MB / best.seconds
    label = (f"{server}: {speed:.1f} MB/s, best of {len(puts)}, {best.cipher}, "
             f"{whose} CPU {cpu / best.session:.0%} of its session")
    counts = {
        **counts, "mb_per_s": round(speed, 1), "cipher": best.cipher, "mac": best.mac,
        "seconds_each": [round(put.seconds, 3) for put, _ in puts],
        "session_seconds_each": [round(put.session, 3) for put, _ in puts],
        "mb_per_s_each": [round(size / MB / put.seconds, 1) for put, _ in puts],
        "server_cpu_seconds_each": [round(cpu, 2) for _, cpu in puts],
        "client_cpu_seconds_each": [round(put.client_cpu, 2) for put, _ in puts],
    }
    return Run(label, rows, best.seconds, peak, idle, counts=counts)


def _at_once(system, accounts, keys, file, name):
    """The `accounts` put `file` over SFTP at once, each with its key: (label, rows, seconds,
    counts) from the start to the last put's end, then to the last import committed."""
    sha256 = _sha256(file.path)
    before = len(system.database.finished_imports())
    count = len(accounts)
    with ThreadPoolExecutor(count) as clients:  # all started together
        started = datetime.now(UTC)
        puts = list(clients.map(lambda account, key: system.put(account, key, file.path, name),
                                accounts, keys))
    records = [r for r in system.wait_for_imports(before + count, PATIENCE_S)
               if r.sha256 == sha256]
    imported = [r for r in records if r.status == "imported" and r.rows == file.rows]
    if not records:
        raise BenchError(f"F: none of the {count} puts at once imported within {PATIENCE_S} s")
    size = file.path.stat().st_size
    counts = {"accounts": count, "imported": len(imported), "bytes_each": size,
              "statuses": dict(Counter(r.status for r in records)),
              "ciphers": dict(Counter(put.cipher for put in puts))}
    what = f"{count} accounts x {size / MIB:.2f} MiB at once"
    return (
        (f"{what}: all uploaded", count * file.rows,
         (max(put.ended_at for put in puts) - started).total_seconds(), counts),
        (f"{what}: all imported ({len(imported)} of {count})", sum(r.rows for r in imported),
         (max(r.finished_at for r in records) - started).total_seconds(), {}),
    )


def sftp_verdict(runs):
    ours, theirs, uploaded, _ = runs
    ratio = theirs.seconds / ours.seconds  # the same file: the speeds' ratio
    counts = uploaded.counts
    return ratio, ratio >= SFTP_RATIO and counts["imported"] == counts["accounts"]


def memory(rig):
    """M: the worker's peak RSS on 5N rows, then on N."""
    runs = []
    for factor in (MEMORY_FACTOR, 1):
        rig.empty()
        file = rig.file(rig.rows * factor, dataset=rig.dataset)
        runs.append(rig.import_file(f"on {factor}N rows", file, tag=f"M-{factor}N"))
    return tuple(runs)


def flat(big, small):
    """Both runs' peak RSS under MAX_RSS_MB, the big one's within MAX_GROWTH of the small's."""
    return (max(big.peak_rss_mb, small.peak_rss_mb) < MAX_RSS_MB
            and big.peak_rss_mb <= small.peak_rss_mb * MAX_GROWTH)


def steady_memory(runs):
    big, small = runs
    return big.peak_rss_mb / small.peak_rss_mb, flat(big, small)


def one_email(rig):
    """D: 2N rows of one e-mail (duplicates: last_wins), each updating the contact the row
    before wrote: no chunk's rows are plain or new, every one goes through a Batch."""
    rig.empty()
    file = rig.file(rig.rows * ONE_EMAIL_FACTOR, email=ONE_EMAIL)
    return (rig.import_file(f"on {ONE_EMAIL_FACTOR}N rows of one e-mail", file, tag="D"),)


def small_memory(runs):
    return None, runs[0].peak_rss_mb < MAX_RSS_MB


def sqlite(rig):
    """S: A (the plain file) on the embedded default SQLite."""
    rig.empty()
    return (rig.import_file("worker on SQLite", rig.file(rig.rows), sqlite=True, tag="S"),)


def sqlite_speed(runs):
    return None, runs[0].rows_per_s >= 50_000


def exports(rig):
    """X: W3's stored contacts exported (EXPORT's first run: all of them), then written by
    the database's own COPY, in the same columns; W3's nightly import, and EXPORT's second run
    (its changes). Then EXPORT's first run on an account of 5N contacts: copies of the first
    account's, made in SQL (every workload empties the database: none is left to reuse).

    Each export's process runs it as a worker does, from its event (run_one's `export`)."""
    stored, nightly_file = nightly_files(rig)
    rig.empty()
    rig.import_file("preparation", stored)
    rig.database.settle()
    rig.set_export(ACCOUNT, EXPORT, EXPORT_SETTINGS)
    full = rig.export("worker, first run of a `changed` export: all", ACCOUNT, EXPORT,
                      FIRST_RUN, tag="X-full")
    dump = rig.dump(COPY_TO_FILE, ACCOUNT, EXPORT)
    rig.import_file("W3's nightly import", nightly_file)
    rig.database.settle()
    since = rig.export("second run, after W3's nightly import: its changes", ACCOUNT, EXPORT,
                       FIRST_RUN + timedelta(days=1), tag="X-changed")
    rig.add_account(BIG_ACCOUNT)
    rig.set_export(BIG_ACCOUNT, EXPORT, EXPORT_SETTINGS)
    log.info("making an account of %sN contacts in SQL", MEMORY_FACTOR)
    rig.database.copy_contacts(ACCOUNT, BIG_ACCOUNT, MEMORY_FACTOR)
    rig.database.settle()
    big = rig.export(f"first run on {MEMORY_FACTOR}N contacts", BIG_ACCOUNT, EXPORT, FIRST_RUN,
                     tag="X-big")
    return full, dump, since, big


def export_verdict(runs):
    """X: the export's speed over the COPY's; met if >= EXPORT_RATIO, its memory flat from N
    to 5N contacts (as M's), and the changed run under CHANGED_SHARE of the full one's time."""
    full, dump, since, big = runs
    ratio = full.rows_per_s / dump.rows_per_s
    return ratio, (ratio >= EXPORT_RATIO and flat(big, full)
                   and since.seconds < full.seconds * CHANGED_SHARE)


def packed_imports(rig):
    """Z: W1's file into an empty account uploaded compressed by `gzip`, compressed and
    encrypted by GnuPG to the key of an account whose template requires it, and plain, each
    `packed_tries` times, the fastest kept. Each packed run's label, and its counts'
    `vs_plain`, give its time over the plain one's."""
    plain = rig.file(rig.rows, dataset=rig.dataset)
    gzipped = rig.gzipped(plain)
    encrypted = rig.encrypted(gzipped, rig.add_encrypting_account(ENCRYPTING_ACCOUNT))
    forms = ((gzipped, ACCOUNT, "Z-gz"), (encrypted, ENCRYPTING_ACCOUNT, "Z-pgp"),
             (plain, ACCOUNT, "Z-plain"))
    tries = {tag: [] for _, _, tag in forms}
    for attempt in range(rig.packed_tries):
        # Every other try in the reverse order: a slow spell of the machine, or a first
        # import into a cold database, weighs on every form alike.
        for file, account, tag in forms if attempt % 2 == 0 else reversed(forms):
            rig.empty()
            size = file.path.stat().st_size
            run = rig.import_file(f"worker, {file.upload_name} ({size / MB:.1f} MB)", file,
                                  tag=f"{tag}-{attempt + 1}", account=account)
            run.counts["bytes"] = size
            tries[tag].append(run)
    gzipped_run, encrypted_run, plain_run = (_fastest(tries[tag]) for _, _, tag in forms)
    return _versus(gzipped_run, plain_run), _versus(encrypted_run, plain_run), plain_run


def _fastest(runs):
    """The fastest of `runs` (the imports of one file), every one's seconds in its counts."""
    best = min(runs, key=lambda run: run.seconds)
    best.counts["seconds_each"] = [round(run.seconds, 2) for run in runs]
    return replace(best, label=f"{best.label}, best of {len(runs)}")


def _versus(run, plain):
    """`run`, its time over the plain file's import's in its label and counts."""
    ratio = run.seconds / plain.seconds
    run.counts["vs_plain"] = round(ratio, 3)
    return replace(run, label=f"{run.label}: {ratio:.2f}x plain's time")


def packed_verdict(runs):
    """Z: the compressed upload's import time over the plain one's; met if <= MAX_GZIP and
    the encrypted one's <= MAX_ENCRYPTED."""
    gzipped, encrypted, plain = runs
    ratio = gzipped.seconds / plain.seconds
    return ratio, ratio <= MAX_GZIP and encrypted.seconds <= plain.seconds * MAX_ENCRYPTED


WORKLOADS = (
    Workload("W1", "first import", ">= 1.0x baseline", first_import, faster(1.0), versus_lean),
    Workload("W2", "half new", ">= 0.9x baseline", half_new, faster(0.9), versus_lean),
    Workload("W3", "nightly re-upload", ">= 2.5x baseline", nightly, faster(2.5), versus_lean),
    Workload("J", "preview, import, rollback of W2",
             f"rollback <= {MAX_ROLLBACK:.0f}x import, preview <= import", safety_net,
             safety_verdict),
    Workload("A", "plain first import", ">= 1.0x baseline", plain_first_import, faster(1.0),
             versus_lean),
    Workload("R", "reader processes", "shown: best / 1 process", readers, speed_up),
    Workload("W4", "latency over FTP", f"p50 <= {P50_S * 1000:.0f} ms, p99 <= {P99_S:.0f} s",
             latency, quick),
    Workload("W5", "big base", "<= 1.5x time on empty db", big_base, slowdown),
    Workload("W6", "fan-in", "all imported, none lost", fan_in, none_lost),
    Workload("M", "memory", f"< {MAX_RSS_MB} MB, {FLAT}", memory, steady_memory),
    Workload("D", "one e-mail", f"< {MAX_RSS_MB} MB", one_email, small_memory),
    Workload("S", "SQLite", ">= 50,000 rows/s", sqlite, sqlite_speed),
    Workload("X", "exports", f">= {EXPORT_RATIO}x COPY, < {MAX_RSS_MB} MB, {FLAT}, "
             f"changes < {CHANGED_SHARE:.0%} of all", exports, export_verdict),
    Workload("Z", "packed uploads", f"gz <= {MAX_GZIP}x plain's time, gz.pgp <= "
             f"{MAX_ENCRYPTED}x", packed_imports, packed_verdict),
    Workload("F", "SFTP", f">= {SFTP_RATIO}x OpenSSH's MB/s, all imported", sftp_speed,
             sftp_verdict, default=False),
)


def select(only=None):
    """The workloads named in `only` ("W1,W3"), in the issue's order; when None, those run
    by default (all but F)."""
    if not only:
        return tuple(w for w in WORKLOADS if w.default)
    wanted = {name.strip().upper() for name in only.split(",") if name.strip()}
    unknown = wanted - {w.id for w in WORKLOADS}
    if unknown:
        known = ", ".join(w.id for w in WORKLOADS)
        raise ValueError(f"unknown workload(s) {', '.join(sorted(unknown))}: choose from {known}")
    return tuple(w for w in WORKLOADS if w.id in wanted)


def run(workload, rig):
    """Measure `workload` on `rig`; return its Result."""
    log.info("%s %s", workload.id, workload.name)
    runs = tuple(workload.measure(rig))
    ratio, met = workload.verdict(runs)
    lean = workload.lean(runs) if workload.lean else None
    return Result(workload.id, workload.name, workload.target, runs, ratio, met, lean)
