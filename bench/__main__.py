"""The command: `python -m bench [--rows N] [--big-base M] [--dataset mixed|cp1252|plain]
[--only W1,W3] [--json PATH]` (see --help for the sizes of W4, W6 and F)."""

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from . import report, workloads
from .database import Database
from .datasets import DATASETS
from .errors import BenchError
from .rig import ROOT, Rig

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_JSON = Path(__file__).with_name("results.json")


def parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the worker's imports against PostgreSQL's own COPY, in one run.",
    )
    parser.add_argument("--rows", type=int, default=1_000_000, metavar="N",
                        help="rows of a file (default: %(default)s)")
    parser.add_argument("--big-base", type=int, default=5_000_000, metavar="M",
                        help="other accounts' contacts in W5's database (default: %(default)s)")
    parser.add_argument("--dataset", choices=list(DATASETS), default="mixed",
                        help="the file of W1, W2, W3 and M: mixed (customers' mess, UTF-8 with "
                             "a BOM), cp1252 (the same in Windows-1252) or plain (A's) "
                             "(default: %(default)s)")
    parser.add_argument("--latency-uploads", type=int, default=100, metavar="N",
                        help="W4: uploads of a 100-row file, one by one (default: %(default)s)")
    parser.add_argument("--fan-in-accounts", type=int, default=200, metavar="N",
                        help="W6: accounts uploading at once (default: %(default)s)")
    parser.add_argument("--fan-in-rows", type=int, default=10_000, metavar="N",
                        help="W6: rows of each account's file (default: %(default)s)")
    parser.add_argument("--worker-processes", type=int, default=1, metavar="N",
                        help="W4, W6: processes of the worker (default: %(default)s)")
    parser.add_argument("--worker-threads", type=int, default=4, metavar="N",
                        help="W4, W6: threads of each worker process (default: %(default)s)")
    parser.add_argument("--sftp-mb", type=int, default=100, metavar="N",
                        help="F: megabytes of the file put over SFTP (default: %(default)s)")
    parser.add_argument("--sftp-tries", type=int, default=3, metavar="N",
                        help="F: puts of it to each server, the best kept (default: %(default)s)")
    parser.add_argument("--sftp-accounts", type=int, default=20, metavar="N",
                        help="F: accounts putting 1 MiB each at once (default: %(default)s)")
    parser.add_argument("--packed-tries", type=int, default=2, metavar="N",
                        help="Z: imports of each form of the file, the best kept "
                             "(default: %(default)s)")
    parser.add_argument("--only", metavar="W1,W3",
                        help="the workloads to run (default: all but F, which measures SFTP "
                             "transfers and may install openssh-server): "
                             + ",".join(w.id for w in workloads.WORKLOADS))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help="where the figures are written (default: bench/results.json)")
    parser.add_argument("--database-url", default=DEFAULT_ADMIN_URL, metavar="URL",
                        help="an admin URL of the PostgreSQL server (default: %(default)s)")
    parser.add_argument("--database-name", default="dropimport_bench", metavar="NAME",
                        help="the database created (after dropping it) and dropped at the end "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="the data's seed (default: 1)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="write a cProfile of each measured import into DIR "
                             "(the figures are then slower than the truth)")
    args = parser.parse_args(argv)
    if args.rows < 2 or args.big_base < 10:
        parser.error("--rows must be at least 2 and --big-base at least 10")
    sizes = (args.latency_uploads, args.fan_in_accounts, args.fan_in_rows,
             args.worker_processes, args.worker_threads, args.sftp_mb, args.sftp_tries,
             args.sftp_accounts, args.packed_tries)
    if min(sizes) < 1:
        parser.error("--latency-uploads, --fan-in-*, --worker-*, --sftp-* and --packed-tries "
                     "must be at least 1")
    try:
        args.workloads = workloads.select(args.only)
    except ValueError as error:
        parser.error(str(error))
    return args


def commit():
    """The code's commit, if this is a git working tree (read only)."""
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    return done.stdout.strip() or None


def main(argv=None):
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    started, clock = datetime.now(UTC), time.monotonic()
    database = Database(args.database_url, args.database_name)
    with tempfile.TemporaryDirectory(prefix="dropimport-bench-") as root:
        rig = Rig(Path(root), database, args.rows, args.big_base, args.seed, args.profile,
                  dataset=args.dataset, uploads=args.latency_uploads, accounts=args.fan_in_accounts,
                  fan_in_rows=args.fan_in_rows, processes=args.worker_processes,
                  threads=args.worker_threads, sftp_mb=args.sftp_mb, sftp_tries=args.sftp_tries,
                  sftp_accounts=args.sftp_accounts, packed_tries=args.packed_tries)
        try:
            rig.setup()
            postgresql = database.version()
            results = [workloads.run(workload, rig) for workload in args.workloads]
        except BenchError as error:
            sys.exit(f"python -m bench: {error}")
        finally:
            database.drop()
    print(report.table(results))
    document = report.document(
        results,
        command=" ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        started_at=started.isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - clock, 1),
        rows=args.rows, big_base=args.big_base, dataset=args.dataset, seed=args.seed,
        commit=commit(),
        latency_uploads=args.latency_uploads, fan_in_accounts=args.fan_in_accounts,
        fan_in_rows=args.fan_in_rows, worker_processes=args.worker_processes,
        worker_threads=args.worker_threads, sftp_mb=args.sftp_mb, sftp_tries=args.sftp_tries,
        sftp_accounts=args.sftp_accounts, packed_tries=args.packed_tries,
        machine={"cpus": os.cpu_count(), "platform": platform.platform(),
                 "python": platform.python_version(), "postgresql": postgresql},
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
