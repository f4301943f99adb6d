"""Progress of long imports: cheap, periodic, visible in `imports show`."""

import json
import subprocess

from tests.e2e.conftest import DROPIMPORT
from tests.worker.conftest import HEADER, spool
from worker.importer import Importer
from worker.progress import Progress
from worker.template import Chunk


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def chunks(total=10_000, size=1000, row_bytes=10):
    """Stand-ins for the Chunks of a file of `total` rows, `row_bytes` bytes each."""
    for done in range(size, total + 1, size):
        chunk = Chunk()
        chunk.rows, chunk.bytes_read = size, done * row_bytes
        yield chunk


def test_progress_is_reported_every_interval(tmp_path, caplog):
    caplog.set_level("INFO")
    clock = Clock()
    event = {"import_id": "i", "account": "acme", "file": "contacts.csv", "size": 100_000}
    progress = Progress(tmp_path, event, interval=5.0, clock=clock)
    for done, _ in enumerate(progress.track(chunks()), 1):
        clock.now += 2.0  # 500 rows/s
        if done == 2:
            assert not (tmp_path / ".progress").exists()  # not before 5 s
    # Then a report came once 5 s had passed, after a chunk: at 3000, 6000 and 9000 rows
    state = json.loads((tmp_path / ".progress").read_text())
    assert (state["rows_done"], state["rows_per_second"], state["seconds_left"]) == (9000, 500, 2)
    lines = [r.getMessage() for r in caplog.records if "rows done" in r.getMessage()]
    assert lines == [
        f"import i of account acme file contacts.csv: {done} rows done, 500 rows/s, "
        f"about {left} s left" for done, left in ((3000, 14), (6000, 8), (9000, 2))
    ]


def test_a_running_import_shows_its_progress(importer, home, settings):
    # Given an import under way (its record running, its progress beside the spooled file)
    event = spool(home, "acme", HEADER + "jo@x.com;;;\r\n")
    importer.store.start_import(event)
    folder = home.spool / "acme" / event["import_id"]
    (folder / ".progress").write_text(json.dumps(
        {"rows_done": 250_000, "rows_per_second": 50_000, "seconds_left": 15,
         "updated_at": "2026-11-25T09:00:00+00:00"}))
    env = {"DROPIMPORT_HOME": str(home.root), "DROPIMPORT_DATABASE_URL": settings.database_url,
           "PATH": "/usr/bin:/bin"}
    shown = subprocess.run([DROPIMPORT, "imports", "show", event["import_id"]], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert "progress:      250000 rows done, 50000 rows/s, about 15 s left" in shown


def test_an_import_reports_its_progress_as_it_goes(home, settings, importer):
    quick = Importer(home, importer.store, progress_interval=0)
    event = spool(home, "acme", HEADER + "".join(f"c{i}@x.fr;;;\r\n" for i in range(12_000)))
    quick.run(event)
    state = json.loads((home.archive / "acme" / event["import_id"] / ".progress").read_text())
    assert state["rows_done"] == 12_000
