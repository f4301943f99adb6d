"""The metrics directories of the workers of one host: each its own, never another's removed."""

import os
import subprocess

from worker.runtime.metrics import FOLDER, own_folder


def gone_pid():
    """The id of a process that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_worker_gone_leaves_its_directory_a_running_one_keeps_it(tmp_path):
    # Given the directories of a worker gone and of a worker running, each with its counts
    gone = tmp_path / FOLDER.format(port=9191, pid=gone_pid())
    other = subprocess.Popen(["sleep", "60"])
    running = tmp_path / FOLDER.format(port=9191, pid=other.pid)
    for folder in (gone, running):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"counts")
    try:
        # When this process starts a worker on the same port
        own = own_folder(tmp_path, 9191, os.getpid())
    finally:
        other.kill()
        other.wait()
    # Then it has a new, empty, private directory; the gone worker's is removed
    assert own == tmp_path / f"dropimport-worker-metrics-9191-{os.getpid()}"
    assert list(own.iterdir()) == []
    assert own.stat().st_mode & 0o777 == 0o700
    assert not gone.exists()
    # And the running worker's directory and counts are left as they were
    assert (running / "counter_1.db").read_bytes() == b"counts"
