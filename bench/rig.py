"""The test rig: a temporary home with one account, its generated files, its database, and the
way every load is measured (a child process of its own, `bench.run_one`)."""

import hashlib
import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent.incoming import Arrival, new_import_id
from dropimport.accounts import Registry
from schemas import spool as layout
from schemas.settings import Home

from . import baseline, data
from .errors import BenchError
from .report import Run
from .system import PASSWORD, System

log = logging.getLogger(__name__)

ACCOUNT = "acme"
TEMPLATE = Path(__file__).with_name("template.json")
#: The directory `python -m bench.run_one` is run from, so that it finds the bench package.
ROOT = Path(__file__).resolve().parent.parent


class Rig:
    """Everything a workload needs, under the temporary directory `root`.

    `rows` is the N of the workloads, `big_base` the number of other accounts' contacts of W5;
    `profile`, a directory where each measured import writes its cProfile. Over FTP: W4's
    `uploads`, W6's `accounts` of `fan_in_rows` rows each, and the worker's `processes` x
    `threads`.
    """

    def __init__(self, root, database, rows, big_base, seed=1, profile=None, *, uploads=100,
                 accounts=200, fan_in_rows=10_000, processes=1, threads=4):
        self.root = root
        self.home = Home(root / "home")
        self.files = root / "files"
        self.database = database
        self.rows = rows
        self.big_base = big_base
        self.seed = seed
        self.profile = profile
        self.uploads = uploads
        self.accounts = accounts
        self.fan_in_rows = fan_in_rows
        self.processes = processes
        self.threads = threads
        self.template = json.loads(TEMPLATE.read_text("utf-8"))
        self._generated = {}

    def setup(self):
        """The account with the benchmark's template; the database, fresh."""
        self.files.mkdir(parents=True)
        registry = Registry(self.home)
        registry.create(ACCOUNT, ACCOUNT, "bench")
        registry.set_template(ACCOUNT, self.template)
        self.database.create()

    @property
    def sqlite_url(self):
        return f"sqlite:///{self.home.root / 'contacts.db'}"

    def file(self, count, changed=0.0, seed=None, email=None):
        """The generated file of `count` rows (`changed`: see data.rows; `email`, the one
        e-mail of every row, if given), written on first use."""
        seed = self.seed if seed is None else seed
        key = (seed, count, changed, email)
        if key not in self._generated:
            name = f"{seed}-{count}-{changed}" + (f"-{email}" if email else "")
            path = self.files / f"contacts-{name}.csv"
            log.info("generating %s rows (seed %s, %s changed%s)", f"{count:,}", seed, changed,
                     f", all of {email}" if email else "")
            self._generated[key] = data.write(path, seed, count, changed, email=email)
        return self._generated[key]

    def upload_file(self, count, number):
        """The file of `count` rows as upload `number` of a series sends it (data.numbered)."""
        return data.write(self.files / "upload.csv", self.seed, count, number=number)

    def system(self, name, accounts):
        """The real agent and worker (a System, to use in `with`) on a home of their own,
        `name`, with `accounts` accounts that have the benchmark's template."""
        home = Home(self.root / name)
        registry = Registry(home)
        names = [f"{ACCOUNT}-{n:03d}" for n in range(accounts)]

        def create(account):  # the FTP login is the account's name; W4 uploads often
            registry.create(account, account, PASSWORD,
                            uploads_per_hour=max(self.uploads + 1, 120))
            registry.set_template(account, self.template)

        log.info("creating %d account(s)", accounts)
        with ThreadPoolExecutor(os.cpu_count()) as pool:  # argon2 hashes: slow, GIL released
            list(pool.map(create, names))
        return System(home, self.database, names, self.processes, self.threads)

    def spool(self, path):
        """Put the file at `path` in the spool as the agent does; return its file event."""
        arrival = Arrival(new_import_id(), ACCOUNT, self.template["file"])
        folder = layout.folder(self.home, ACCOUNT, arrival.import_id)
        folder.mkdir(parents=True)
        os.link(path, folder / arrival.file)  # archived after the import: the source stays
        with open(path, "rb") as file:
            sha256 = hashlib.file_digest(file, "sha256").hexdigest()
        event = {
            "import_id": arrival.import_id, "account": ACCOUNT, "file": arrival.file,
            "spool_path": layout.spool_path(self.home, ACCOUNT, arrival.import_id, arrival.file),
            "size": path.stat().st_size, "sha256": sha256,
            "received_at": arrival.received_at.isoformat(),
        }
        (folder / layout.EVENT_FILE).write_text(json.dumps(event), "utf-8")
        return event

    def import_file(self, label, path, sqlite=False, tag=None):
        """Measure the worker's import of the file at `path` into the account.

        `tag` names the profile written when profiling; a preparation goes without.
        """
        spec = {"kind": "import", "home": str(self.home.root), "event": self.spool(path),
                "database_url": self.sqlite_url if sqlite else self.database.url}
        if self.profile and tag:
            spec["profile"] = str(Path(self.profile) / f"{tag}.prof")
        return self._measure(label, spec, "sqlite" if sqlite else "postgresql")

    def baseline(self, label, path):
        """Measure the COPY baseline on the file at `path`, into the account."""
        spec = {"kind": "baseline", "database_url": self.database.url, "account": ACCOUNT,
                "path": str(path)}
        return self._measure(label, spec, "postgresql")

    def _measure(self, label, spec, database):
        done = subprocess.run(
            [sys.executable, "-m", "bench.run_one", json.dumps(spec)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"{label}: the measured process failed (exit {done.returncode})")
        measured = json.loads(done.stdout.splitlines()[-1])
        if measured["status"] != "imported":
            raise BenchError(f"{label}: import {measured['status']}: {measured['reason']}")
        counts = measured["counts"]
        run = Run(label, counts["rows"], measured["seconds"], measured["peak_rss_mb"],
                  measured["idle_rss_mb"], database, counts)
        log.info("%s: %s rows in %.2f s (%s rows/s), peak RSS %.0f MB", label,
                 f"{run.rows:,}", run.seconds, f"{run.rows_per_s:,.0f}", run.peak_rss_mb)
        return run

    def prepare(self, path):
        """Start from the contacts of the file at `path`, imported by the worker (unmeasured).

        The worker stores them in its own shape (E.164 phones, ISO dates, booleans), so that
        a later file finds unchanged what did not change. The state is kept for `restore`.
        """
        self.database.empty()
        self.import_file("preparation", path)
        self.database.snapshot()
        self.database.settle()

    def restore(self):
        """Back to the state `prepare` made, for the next measurement."""
        self.database.restore()

    def empty(self):
        """An empty database (PostgreSQL) and no SQLite database."""
        self.database.empty()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.home.root / 'contacts.db'}{suffix}").unlink(missing_ok=True)

    def load_other_accounts(self, total, accounts):
        """Fill the database with `total` contacts of `accounts` other accounts (COPY)."""
        self.database.empty()
        path = self.file(total // accounts, seed=self.seed + 1)
        for n in range(accounts):
            log.info("loading the big base: account %d of %d", n + 1, accounts)
            baseline.load(self.database.url, f"tenant-{n:03d}", path)
        self.database.settle()
