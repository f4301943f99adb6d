"""`dropimport health agent|worker`: the probes Docker and Kubernetes run."""

import socket
import subprocess
import time

import pytest

from tests.harness import DROPIMPORT


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
    result = probe(tmp_path, "agent", DROPIMPORT_FTP_PORT=ftp_port,
                   DROPIMPORT_SFTP_PORT=ftp_port)
    assert (result.returncode, result.stdout) == (0, "healthy\n")
    # An agent whose SFTP door does not answer is not healthy, unless SFTP is off
    result = probe(tmp_path, "agent", DROPIMPORT_FTP_PORT=ftp_port, DROPIMPORT_SFTP_PORT="2")
    assert "nothing answers on 127.0.0.1:2 " in result.stderr
    result = probe(tmp_path, "agent", DROPIMPORT_FTP_PORT=ftp_port, DROPIMPORT_SFTP_PORT="off")
    assert (result.returncode, result.stdout) == (0, "healthy\n")


def test_a_worker_is_healthy_while_its_processes_consume(stopped_system):
    def probe_worker():
        return stopped_system.cli("health", "worker", check=False,
                                  env={"DROPIMPORT_HEALTH_MIN_FREE_MB": "1"})

    # Given no worker running: the probe fails, and says so in one line
    result = probe_worker()
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: unhealthy: no worker process on ")
    assert "consumes contact-imports (no heartbeat in " in line
    # When a worker starts, the probe passes once its processes consume
    [worker] = stopped_system.start([DROPIMPORT, "worker", "--processes", "2"],
                                    wait_for_ftp=False)
    deadline = time.monotonic() + 30
    while (result := probe_worker()).returncode != 0:
        assert worker.poll() is None, stopped_system.log.read_text()
        assert time.monotonic() < deadline, result.stderr
        time.sleep(0.5)
    assert result.stdout == "healthy\n"
    # When it stops, the probe fails again
    assert stopped_system.stop(worker) == [0]
    assert "consumes contact-imports (no heartbeat in " in probe_worker().stderr


def test_an_agent_says_every_problem_in_one_line(tmp_path):
    result = probe(tmp_path, "agent", DROPIMPORT_FTP_PORT="1", DROPIMPORT_SFTP_PORT="2",
                   DROPIMPORT_BROKER_URL="amqp://guest:secret@127.0.0.1:1/%2F",
                   DROPIMPORT_HEALTH_MIN_FREE_MB="999999999")
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: unhealthy: cannot reach RabbitMQ at amqp://guest:***@")
    assert "nothing answers on 127.0.0.1:1 " in line
    assert "nothing answers on 127.0.0.1:2 " in line
    assert "less than 999999999 MB" in line
    assert "secret" not in line


def test_a_worker_whose_store_is_down(tmp_path):
    result = probe(tmp_path, "worker",
                   DROPIMPORT_DATABASE_URL="postgresql://app:secret@127.0.0.1:1/contacts")
    assert result.returncode != 0
    assert "cannot reach the contacts store at postgresql://app:***@127.0.0.1:1/contacts" \
        in result.stderr
    assert "secret" not in result.stderr
