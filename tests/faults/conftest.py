"""Fixtures for the fault tests, on the real processes of tests/harness.py: a link to RabbitMQ
that can be cut, and a home on a filesystem small enough to fill up."""

import io
import json
import subprocess
from urllib.parse import urlsplit

import pytest

from agent import staging
from schemas import spool
from schemas.settings import Home
from tests.conftest import DEMO
from tests.faults.proxy import Proxy
from tests.harness import DROPIMPORT, WORKER

HEADER = "E-mail;Prénom;Nom;Ville\r\n"
USER, PASSWORD = "acme-ftp", "acme-secret"
#: While RabbitMQ is unreachable the agent retries at least every second: a test sees the
#: recovery at once, and still several failed attempts before it.
AGENT = [DROPIMPORT, "agent", "--max-backoff", "1"]


def csv(*rows):
    """A file of the demo template: rows of (e-mail, city)."""
    return HEADER + "".join(f"{email};Jo;Doe;{city}\r\n" for email, city in rows)


def upload(system, text, name="contacts.csv"):
    with system.ftp(USER, PASSWORD) as ftp:
        return ftp.storbinary(f"STOR {name}", io.BytesIO(text.encode("utf-8")))


def in_progress(system):
    """The files of the uploads in progress in the system's staging/, of every agent."""
    return staging.uploads(Home(system.home))


def statuses(system):
    """The import statuses, oldest first."""
    return [record["status"] for record in reversed(system.imports())]


def events_in(folder):
    """The file events under `folder` (the home's spool, archive...), oldest first."""
    paths = sorted(folder.glob(f"*/*/{spool.EVENT_FILE}"), key=lambda path: path.parent.name)
    return [json.loads(path.read_text("utf-8")) for path in paths]


def set_template(system, tmp_path, **changes):
    """Give acme the demo template with `changes` (file, completion...)."""
    template = {**json.loads((DEMO / "template.json").read_text("utf-8")), **changes}
    path = tmp_path / f"{template['file']}.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    system.cli("template", "set", "acme", str(path))


@pytest.fixture
def acme(stopped_system):
    """The system, not started, with account acme and the demo template for contacts.csv."""
    stopped_system.cli("account", "create", "acme", "--ftp-user", USER, "--password-stdin",
                       input=f"{PASSWORD}\n")
    stopped_system.cli("template", "set", "acme", str(DEMO / "template.json"))
    return stopped_system


@pytest.fixture
def broker_proxy():
    """A link to the machine's RabbitMQ that the test can cut and restore."""
    proxy = Proxy(5672)
    yield proxy
    proxy.close()


@pytest.fixture
def start_agent(acme, broker_proxy, broker_url):
    """Start `dropimport agent` talking to RabbitMQ through the proxy (same vhost as the worker)."""
    url = broker_proxy.url("amqp://guest:guest", urlsplit(broker_url).path)

    def start():
        [agent] = acme.start(AGENT, env={"DROPIMPORT_BROKER_URL": url})
        return agent

    return start


@pytest.fixture
def start_worker(acme):
    """Start a dramatiq worker talking to RabbitMQ directly."""

    def start():
        [worker] = acme.start(WORKER, wait_for_ftp=False)
        return worker

    return start


def _umount(path):
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


@pytest.fixture
def small_disk(home):
    """DROPIMPORT_HOME on a 2 MiB tmpfs of its own (staging and incoming on one filesystem).

    Request it before `stopped_system`, so that it is unmounted after the processes stopped.
    """
    home.root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(home.root)],
                   check=True, capture_output=True)
    try:
        yield home.root
    finally:
        _umount(home.root)
