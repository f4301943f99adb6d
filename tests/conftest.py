"""Fixtures shared by every test: a temporary home, the real services, and the whole system
on them as real processes (tests/harness.py).

RabbitMQ and PostgreSQL are required: a test that needs one fails when it is missing, it is
never skipped. Each test gets its own RabbitMQ vhost and each run its own PostgreSQL database, so
tests never touch anybody else's queues or data.
"""

import atexit
import json
import os
import secrets
import shutil
import tempfile
import threading
from pathlib import Path

import asyncssh
import psycopg
import pytest

from agent import tls
from dropimport.accounts import Registry
from schemas.settings import Home, Settings
from tests.harness import System, rabbitmq_vhost
from worker.write.tables import metadata

#: The demo `dropimport run --demo` serves: a sample, its template, its completion marker.
DEMO_SOURCE = Path(__file__).parent.parent / "dropimport" / "demo"


def _demo_without_marker():
    folder = Path(tempfile.mkdtemp(prefix="dropimport-test-demo-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    shutil.copy(DEMO_SOURCE / "contacts.csv", folder)
    template = json.loads((DEMO_SOURCE / "template.json").read_text("utf-8"))
    del template["completion"]
    (folder / "template.json").write_text(json.dumps(template, ensure_ascii=False), "utf-8")
    return folder


#: The demo's sample and template, the template less its completion marker: most tests upload
#: a file and wait for its import (the marker's tests give the template one).
DEMO = _demo_without_marker()
POSTGRES_ADMIN_URL = os.environ.get(
    "DROPIMPORT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(autouse=True)
def no_thread_leak():
    """Fail any test that leaves a thread running (servers, watchers, observers)."""
    before = set(threading.enumerate())
    yield
    leaked = [
        t for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.name.startswith("pytest_timeout")
    ]
    for thread in leaked:
        thread.join(timeout=5)
    leaked = [t for t in leaked if t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
def home(tmp_path):
    return Home(tmp_path / "home")


@pytest.fixture
def registry(home):
    return Registry(home)


@pytest.fixture
def public_key():
    """Make a new ed25519 key; return its public key's line, as in a .pub file."""
    def make(comment="jo@laptop"):
        key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
        return key.export_public_key().decode()
    return make


@pytest.fixture
def demo_template():
    return json.loads((DEMO / "template.json").read_text("utf-8"))


@pytest.fixture
def broker_url():
    """A RabbitMQ vhost of this test's own, deleted at the end: no message outlives its test."""
    with rabbitmq_vhost("dropimport-test") as url:
        yield url


@pytest.fixture(scope="session")
def postgres_server_url():
    """A PostgreSQL database of this test run's own, dropped at the end."""
    name = f"dropimport_test_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, home):
    """Each store test runs on the embedded SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        home.root.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{home.root / 'contacts.db'}"
    url = request.getfixturevalue("postgres_server_url")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {', '.join(metadata.tables)}")
    return url


#: For an end-to-end test whose store's side is tested on both stores in tests/worker: the
#: pipeline once, on the embedded store.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def settings(home, database_url):
    return Settings.from_env({
        "DROPIMPORT_HOME": str(home.root), "DROPIMPORT_DATABASE_URL": database_url,
    })


@pytest.fixture
def stopped_system(home, broker_url, database_url):
    """A system with its own home, vhost and database (SQLite, then PostgreSQL), ready to start
    (tests/harness.py); what it started is stopped at the end, and nothing may be left."""
    system = System(home.root, broker_url, database_url)
    yield system
    system.close()


@pytest.fixture
def system(stopped_system):
    """A running `dropimport run`."""
    stopped_system.start()
    return stopped_system


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and its key: (cert path, key path)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    tls.write_self_signed(cert, key, ["127.0.0.1"])
    return cert, key


@pytest.fixture(scope="session")
def account_key():
    """A key pair made as `dropimport account pgp-key --generate` makes it (once a run)."""
    from dropimport import openpgp

    return openpgp.generate("dropimport test <test@dropimport.invalid>")


@pytest.fixture(scope="session")
def pgp_customer(account_key, tmp_path_factory):
    """A customer's GnuPG keyring: its signing key, and the account's public key."""
    from tests.openpgp import Customer

    found = Customer(tmp_path_factory.mktemp("customer") / "gnupg", account_key)
    yield found
    found.close()


@pytest.fixture(scope="session")
def pgp_stranger(account_key, tmp_path_factory):
    """Another party's GnuPG keyring: a signing key the account does not know."""
    from tests.openpgp import Customer

    found = Customer(tmp_path_factory.mktemp("stranger") / "gnupg", account_key, "stranger")
    yield found
    found.close()
