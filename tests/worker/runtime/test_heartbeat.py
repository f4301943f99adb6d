"""The worker processes' heartbeats and what the probe of a host makes of them (the real
processes are probed in tests/test_health.py)."""

import os
import time

from worker.runtime.heartbeat import ABANDONED, FRESH, beat, clear_abandoned, problem


def aged(path, seconds):
    """A heartbeat written `seconds` ago."""
    beat(path)
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_host_without_heartbeats_has_no_worker(tmp_path):
    assert problem(tmp_path / "heartbeats", host="web-1") == \
        f"no worker process on web-1 consumes contact-imports (no heartbeat in " \
        f"{tmp_path / 'heartbeats'})"


def test_a_fresh_heartbeat_of_the_host_is_a_worker_consuming(tmp_path):
    # Given an old heartbeat of a worker gone, and a fresh one
    aged(tmp_path / "web-1-100", 600)
    beat(tmp_path / "web-1-200")
    # Then the host has a worker consuming, its file private
    assert problem(tmp_path, host="web-1") is None
    assert (tmp_path / "web-1-200").stat().st_mode & 0o777 == 0o600


def test_an_old_heartbeat_is_a_worker_that_stopped_consuming(tmp_path):
    aged(tmp_path / "web-1-100", FRESH + 10)
    assert problem(tmp_path, host="web-1") == \
        "no worker process on web-1 has consumed contact-imports in the last 30 s " \
        "(the newest heartbeat is 40 s old)"


def test_another_hosts_heartbeat_does_not_count(tmp_path):
    # Given a fresh heartbeat of host web-10, whose name starts as web-1's does
    beat(tmp_path / "web-10-100")
    # Then web-1 has no worker
    assert problem(tmp_path, host="web-1").startswith("no worker process on web-1 consumes")


def test_the_heartbeats_of_processes_gone_for_long_are_removed(tmp_path):
    aged(tmp_path / "web-1-100", ABANDONED + 60)
    aged(tmp_path / "web-2-100", FRESH + 10)  # stopped consuming a while ago: left
    clear_abandoned(tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["web-2-100"]
