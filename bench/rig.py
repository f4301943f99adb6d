"""The test rig: a temporary home with one account, its generated files, its database, and the
way every load is measured (a child process of its own, `bench.run_one`)."""

import hashlib
import json
import logging
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from agent.incoming import Arrival
from dropimport import credentials
from dropimport.accounts import Registry
from schemas import spool as layout
from schemas.settings import Home
from schemas.spool import new_import_id
from tests import harness
from worker import exports
from worker.contact import KEYS

from . import baseline, data
from .datasets import DATASETS, PLAIN, Dataset
from .errors import BenchError
from .report import Run
from .system import PASSWORD, System

log = logging.getLogger(__name__)

ACCOUNT = "acme"
#: The rows of the sample that tells the size of a row (file_of).
SAMPLE_ROWS = 10_000
#: The directory `python -m bench.run_one` is run from, so that it finds the bench package.
ROOT = Path(__file__).resolve().parent.parent


class File(NamedTuple):
    """A generated file: where it is, its dataset, its data rows; `suffix`, what its packing
    adds to its template's file name when uploaded (`.gz`, `.gz.pgp`)."""

    path: Path
    dataset: Dataset
    rows: int
    suffix: str = ""

    @property
    def upload_name(self):
        """The name it is uploaded as: its template's file, then its packing's suffix."""
        return self.dataset.template["file"] + self.suffix


class Rig:
    """Everything a workload needs, under the temporary directory `root`.

    `rows` is the N of the workloads, `big_base` the number of other accounts' contacts of W5;
    `profile`, a directory where each measured import writes its cProfile; `dataset`, the
    name of the dataset of W1, W2, W3 and M (datasets.py; the others load the plain one). Over
    FTP: W4's `uploads`, W6's `accounts` of `fan_in_rows` rows each, and the worker's
    `processes` x `threads`. Over SFTP (F): a put of `sftp_mb` MB, `sftp_tries` times, then
    `sftp_accounts` accounts putting 1 MiB each at once. Z imports each form of its file
    `packed_tries` times.
    """

    def __init__(self, root, database, rows, big_base, seed=1, profile=None, *,
                 dataset="mixed", uploads=100, accounts=200, fan_in_rows=10_000, processes=1,
                 threads=4, sftp_mb=100, sftp_tries=3, sftp_accounts=20, packed_tries=2):
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
        self.sftp_mb = sftp_mb
        self.sftp_tries = sftp_tries
        self.sftp_accounts = sftp_accounts
        self.packed_tries = packed_tries
        self.dataset = DATASETS[dataset]
        self.plain = PLAIN
        self.template = PLAIN.template  # the accounts' over FTP (W4, W6)
        self._generated = {}
        self._copies = {}
        #: The DROPIMPORT_SECRET_KEY of the run's imports: it keeps the accounts' OpenPGP keys.
        self.secret_key = credentials.new_key()
        #: The customers' GnuPG home: the accounts' public keys, to encrypt their files to.
        self.gnupg = root / "gnupg"

    def setup(self):
        """The account with the templates of its datasets; the database, fresh."""
        self.files.mkdir(parents=True)
        self.add_account(ACCOUNT)
        self.database.create()

    def add_account(self, account):
        """Create `account` (its login the same) with the templates of the run's datasets."""
        registry = Registry(self.home)
        registry.create(account, account, "bench")
        for dataset in {PLAIN.name: PLAIN, self.dataset.name: self.dataset}.values():
            registry.set_template(account, dataset.template)

    def add_encrypting_account(self, account):
        """Create `account` with the template of the run's dataset requiring files encrypted
        with OpenPGP; make its key pair as an operator does (`dropimport account pgp-key
        --generate`) and import the public key it prints into `gnupg`, as its customer
        would. Return the key's fingerprint."""
        registry = Registry(self.home)
        registry.create(account, account, "bench")
        registry.set_template(account, {**self.dataset.template, "encryption": "openpgp"})
        log.info("making the OpenPGP key pair of account %s", account)
        public = self._run([harness.DROPIMPORT, "account", "pgp-key", account, "--generate"],
                           {"DROPIMPORT_HOME": str(self.home.root),
                            "DROPIMPORT_SECRET_KEY": self.secret_key})
        self.gnupg.mkdir(mode=0o700, exist_ok=True)
        self._gpg("--import", data=public)
        return registry.get(account)["openpgp"]["fingerprint"]

    def gzipped(self, file):
        """`file` compressed by the `gzip` command, at its default level, beside it."""
        target = file.path.with_name(f"{file.path.name}.gz")
        log.info("compressing %s with gzip", file.path.name)
        with open(target, "wb") as compressed:
            self._run(["gzip", "--stdout", str(file.path)], stdout=compressed)
        return file._replace(path=target, suffix=f"{file.suffix}.gz")

    def encrypted(self, file, recipient):
        """`file` encrypted by GnuPG to the public key `recipient` (its fingerprint, imported
        by add_encrypting_account) as its customer encrypts it, beside it."""
        target = file.path.with_name(f"{file.path.name}.pgp")
        log.info("encrypting %s with gpg", file.path.name)
        self._gpg("--trust-model", "always", "--encrypt", "--recipient", recipient,
                  "--output", str(target), str(file.path))
        return file._replace(path=target, suffix=f"{file.suffix}.pgp")

    def _gpg(self, *args, data=None):
        """Run `gpg --batch` on the customers' GnuPG home (`gnupg`)."""
        self._run(["gpg", "--batch", *args], {"GNUPGHOME": str(self.gnupg)}, data)

    def _run(self, command, env=None, data=None, stdout=subprocess.PIPE):
        """What `command` prints, run with `env` added to the environment; BenchError, with
        what it said, if it fails."""
        done = subprocess.run(command, input=data, stdout=stdout, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, **(env or {})}, check=False)
        if done.returncode:
            raise BenchError(f"{' '.join(command[:3])}: {done.stderr.strip()}")
        return done.stdout

    def set_export(self, account, name, export):
        """Give `account` the scheduled export `name` (the account schema's `export`)."""
        Registry(self.home).set_export(account, name, export)

    @property
    def sqlite_url(self):
        return f"sqlite:///{self.home.root / 'contacts.db'}"

    def file(self, count, changed=0.0, seed=None, email=None, dataset=PLAIN):
        """The File of `count` rows of `dataset` (`changed`: see data.rows; `email`, the one
        e-mail of every row, if given: the plain dataset alone), written on first use."""
        seed = self.seed if seed is None else seed
        key = (dataset.name, seed, count, changed, email)
        if key not in self._generated:
            name = f"{dataset.name}-{seed}-{count}-{changed}" + (f"-{email}" if email else "")
            path = self.files / f"contacts-{name}.csv"
            log.info("generating %s %s rows (seed %s, %s changed%s)", f"{count:,}",
                     dataset.name, seed, changed, f", all of {email}" if email else "")
            options = {"email": email} if email else {}
            dataset.write(path, seed, count, changed, **options)
            self._generated[key] = File(path, dataset, count)
        return self._generated[key]

    def file_of(self, size):
        """The plain File of about `size` bytes: as many rows as a sample's size per row says."""
        sample = self.file(SAMPLE_ROWS)
        return self.file(max(math.ceil(size * sample.rows / sample.path.stat().st_size), 1))

    def copyable(self, file):
        """The path of `file` as the baselines load it: itself, or its rows that COPY can read
        (baseline.copyable), written on first use and not measured."""
        if file.dataset.clean:
            return file.path
        if file.path not in self._copies:
            target = file.path.with_suffix(".copy.csv")
            kept, dropped = baseline.copyable(file.path, target, file.dataset.encoding)
            log.info("the baselines' copy of %s: %s rows, %s left out (COPY cannot read them)",
                     file.path.name, f"{kept:,}", f"{dropped:,}")
            self._copies[file.path] = target
        return self._copies[file.path]

    def upload_file(self, count, number):
        """The file of `count` rows as upload `number` of a series sends it (data.numbered)."""
        return data.write(self.files / "upload.csv", self.seed, count, number=number)

    def system(self, name, accounts, keys=()):
        """The real agent and worker (a System, to use in `with`) on a home of their own,
        `name`, with `accounts` accounts that have the benchmark's template; `keys`, the
        paths of the SSH public keys of the first accounts, one each (for SFTP)."""
        home = Home(self.root / name)
        registry = Registry(home)
        names = [f"{ACCOUNT}-{n:03d}" for n in range(accounts)]
        public = dict(zip(names, keys, strict=False))

        def create(account):  # the FTP login is the account's name; W4 uploads often
            registry.create(account, account, PASSWORD,
                            uploads_per_hour=max(self.uploads + 1, 120))
            registry.set_template(account, self.template)
            if account in public:
                registry.add_key(account, Path(public[account]).read_text("ascii"))

        log.info("creating %d account(s)", accounts)
        with ThreadPoolExecutor(os.cpu_count()) as pool:  # argon2 hashes: slow, GIL released
            list(pool.map(create, names))
        return System(home, self.database, names, self.processes, self.threads)

    def spool(self, file, preview=False, account=ACCOUNT):
        """Put `file` in the spool of `account` as the agent does, under the name its template
        imports, packed as its `suffix` says (`preview`: as if uploaded into dryrun/); return
        its file event."""
        path = file.path
        arrival = Arrival(new_import_id(), account, file.upload_name)
        folder = layout.folder(self.home, account, arrival.import_id)
        folder.mkdir(parents=True)
        os.link(path, folder / arrival.file)  # archived after the import: the source stays
        with open(path, "rb") as file:
            sha256 = hashlib.file_digest(file, "sha256").hexdigest()
        event = {
            "import_id": arrival.import_id, "account": account, "file": arrival.file,
            "spool_path": layout.spool_path(self.home, account, arrival.import_id, arrival.file),
            "size": path.stat().st_size, "sha256": sha256,
            "received_at": arrival.received_at.isoformat(),
        }
        if preview:
            event["preview"] = True
        (folder / layout.EVENT_FILE).write_text(json.dumps(event), "utf-8")
        return event

    def import_file(self, label, file, sqlite=False, tag=None, reader_processes=None,
                    preview=False, account=ACCOUNT):
        """Measure the worker's import of `file` (a File) into `account`, its rows
        converted in `reader_processes` processes (default: the worker's); `preview`: the
        preview of it (as uploaded into dryrun/). Its counts hold its `import_id`.

        `tag` names the profile written when profiling; a preparation goes without.
        """
        event = self.spool(file, preview, account)
        spec = {"kind": "import", "home": str(self.home.root), "event": event,
                "database_url": self.sqlite_url if sqlite else self.database.url,
                "reader_processes": reader_processes}
        run = self._measure(label, self._profiled(spec, tag), "sqlite" if sqlite else "postgresql")
        run.counts["import_id"] = event["import_id"]
        return run

    def roll_back(self, label, import_id):
        """Measure the rollback of the import `import_id` (`dropimport imports rollback`)."""
        spec = {"kind": "rollback", "home": str(self.home.root), "import_id": import_id,
                "database_url": self.database.url}
        return self._measure(label, spec, "postgresql")

    def baseline(self, label, file, lean=False):
        """Measure a baseline on `file`, into the account: the COPY baseline into the
        worker's table, or the lean one into its own (baseline.py). Its rows are the file's."""
        spec = {"kind": "baseline", "table": "lean" if lean else "contacts",
                "database_url": self.database.url, "account": ACCOUNT,
                "path": str(self.copyable(file)), "rows": file.rows,
                "names": baseline.staging_names(file.dataset.template),
                "encoding": file.dataset.copy_encoding}
        return self._measure(label, spec, "postgresql")

    def export(self, label, account, name, planned_for, tag=None):
        """Measure the run of the export `name` of `account` planned for `planned_for` (an
        aware datetime), as the worker runs its event; its rows and bytes are its file's.

        `tag` names the profile written when profiling."""
        spec = {"kind": "export", "home": str(self.home.root), "database_url": self.database.url,
                "account": account, "export": name, "planned_for": planned_for.isoformat()}
        return self._measure(label, self._profiled(spec, tag), "postgresql")

    def dump(self, label, account, name):
        """Measure the baseline of the export `name` of `account` (baseline.dump): its columns
        written by the database's own COPY into a file of the run's, deleted once measured."""
        registry = Registry(self.home)
        columns = exports.columns(registry.export(account, name), registry.templates(account))
        path = self.root / "dump.csv"
        spec = {"kind": "dump", "database_url": self.database.url, "account": account,
                "columns": list(columns), "stored": [*KEYS, *exports.META], "path": str(path)}
        try:
            return self._measure(label, spec, "postgresql")
        finally:
            path.unlink(missing_ok=True)

    def _profiled(self, spec, tag):
        """`spec`, writing its cProfile named `tag` when profiling; a preparation goes
        without."""
        if self.profile and tag:
            return {**spec, "profile": str(Path(self.profile) / f"{tag}.prof")}
        return spec

    def _measure(self, label, spec, database):
        done = subprocess.run(
            [sys.executable, "-m", "bench.run_one", json.dumps(spec)], cwd=ROOT,
            env={**os.environ, "DROPIMPORT_SECRET_KEY": self.secret_key},
            stdout=subprocess.PIPE, text=True, check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"{label}: the measured process failed (exit {done.returncode})")
        measured = json.loads(done.stdout.splitlines()[-1])
        if measured["status"] not in ("imported", "previewed", "rolled_back", "done"):
            raise BenchError(f"{label}: {spec['kind']} {measured['status']}: "
                             f"{measured['reason']}")
        counts = measured["counts"]
        run = Run(label, counts["rows"], measured["seconds"], measured["peak_rss_mb"],
                  measured["idle_rss_mb"], database, counts)
        log.info("%s: %s rows in %.2f s (%s rows/s), peak RSS %.0f MB", label,
                 f"{run.rows:,}", run.seconds, f"{run.rows_per_s:,.0f}", run.peak_rss_mb)
        return run

    def prepare(self, file):
        """Start from the contacts of `file`, imported by the worker, and in the lean
        baseline's table by that baseline (unmeasured).

        The worker stores them in its own shape (E.164 phones, ISO dates, booleans), so that
        a later file finds unchanged what did not change; so does the lean baseline in its
        own (raw cells). The state is kept for `restore`.
        """
        self.database.empty()
        self.import_file("preparation", file)
        baseline.load_lean(self.database.url, ACCOUNT, self.copyable(file),
                           baseline.staging_names(file.dataset.template),
                           file.dataset.copy_encoding)
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
        file = self.file(total // accounts, seed=self.seed + 1)
        names = baseline.staging_names(file.dataset.template)
        for n in range(accounts):
            log.info("loading the big base: account %d of %d", n + 1, accounts)
            baseline.load(self.database.url, f"tenant-{n:03d}", file.path, names)
        self.database.settle()
