"""`dropimport health agent|worker`: the probes Docker and Kubernetes run."""

import socket
import subprocess

import pytest

from tests.e2e.conftest import DROPIMPORT


def probe(tmp_path, role, **env):
    return subprocess.run(
        [DROPIMPORT, "health", role], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "DROPIMPORT_HOME": str(tmp_path),
             "DROPIMPORT_HEALTH_MIN_FREE_MB": "1", **env},
    )


@pytest.fixture
def ftp_port():
    """A port something listens on, as the agent's FTP server would."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield str(listener.getsockname()[1])


def test_a_healthy_agent(tmp_path, ftp_port):
    result = probe(tmp_path, "agent", DROPIMPORT_FTP_PORT=ftp_port)
    assert (result.returncode, result.stdout) == (0, "healthy\n")


def test_a_healthy_worker(tmp_path):
    result = probe(tmp_path, "worker")
    assert (result.returncode, result.stdout) == (0, "healthy\n")


def test_an_agent_says_every_problem_in_one_line(tmp_path):
    result = probe(tmp_path, "agent", DROPIMPORT_FTP_PORT="1",
                   DROPIMPORT_BROKER_URL="amqp://guest:secret@127.0.0.1:1/%2F",
                   DROPIMPORT_HEALTH_MIN_FREE_MB="999999999")
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: unhealthy: cannot reach RabbitMQ at amqp://guest:***@")
    assert "nothing answers on 127.0.0.1:1" in line
    assert "less than 999999999 MB" in line
    assert "secret" not in line


def test_a_worker_whose_store_is_down(tmp_path):
    result = probe(tmp_path, "worker",
                   DROPIMPORT_DATABASE_URL="postgresql://app:secret@127.0.0.1:1/contacts")
    assert result.returncode != 0
    assert "cannot reach the contacts store at postgresql://app:***@127.0.0.1:1/contacts" \
        in result.stderr
    assert "secret" not in result.stderr
