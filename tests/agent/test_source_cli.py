"""`dropimport source`: add, list, test and fetch, as an operator runs them."""

import json
import subprocess

import pytest

from dropimport import credentials
from tests.conftest import DEMO
from tests.harness import DROPIMPORT
from tests.servers import PASSWORD, USER, CustomerFtp, put

KEY = credentials.new_key()


@pytest.fixture
def customer(tmp_path):
    root = tmp_path / "customer"
    root.mkdir()
    server = CustomerFtp(root)
    server.root = root
    yield server
    server.stop()


@pytest.fixture
def cli(tmp_path):
    env = {"DROPIMPORT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin",
           "DROPIMPORT_SECRET_KEY": KEY}

    def run(*args, input=None, **extra):
        return subprocess.run([DROPIMPORT, *args], env={**env, **extra}, input=input,
                              capture_output=True, text=True, timeout=60)

    run("account", "create", "acme", "--ftp-user", "acme", "--password-stdin", input="pw\n")
    return run


def add(cli, customer, password=PASSWORD, *options):
    url = f"ftp://{USER}@127.0.0.1:{customer.port}/contacts.csv"
    return cli("source", "add", "acme", "nightly", "--url", url, "--password-stdin",
               "--schedule", "0 6 * * *", *options, input=f"{password}\n")


def test_add_list_test_and_fetch_a_source(cli, customer, tmp_path):
    cli("template", "set", "acme", str(DEMO / "template.json"))
    put(customer.root, "contacts.csv", (DEMO / "contacts.csv").read_bytes())

    added = add(cli, customer)
    assert added.returncode == 0, added.stderr
    assert f"ftp://{USER}@127.0.0.1:{customer.port}/contacts.csv" in added.stdout
    assert added.stderr == ""  # the template for contacts.csv exists: no warning

    # The password is in no file of the home, nor in what `source list` prints
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes()
    listed = cli("source", "list")
    assert listed.returncode == 0 and "nightly" in listed.stdout
    [row] = json.loads(cli("source", "list", "acme", "--json").stdout)
    assert row["password"] == "encrypted" and row["schedule"] == "0 6 * * *"
    assert PASSWORD not in listed.stdout + json.dumps(row)

    tested = cli("source", "test", "acme", "nightly")
    assert tested.returncode == 0, tested.stderr
    assert "contacts.csv" in tested.stdout and "would be fetched" in tested.stdout

    fetched = cli("source", "fetch", "acme", "nightly")
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.startswith("fetched contacts.csv: import ")
    assert len(list((tmp_path / "home" / "incoming").iterdir())) == 1

    assert cli("source", "fetch", "acme", "nightly").stdout == "nothing new to fetch\n"
    assert "already fetched, unchanged" in cli("source", "test", "acme", "nightly").stdout

    assert cli("source", "remove", "acme", "nightly").returncode == 0
    assert cli("source", "list", "--json").stdout.strip() == "[]"


def test_a_wrong_password_is_one_clear_line_without_the_password(cli, customer):
    put(customer.root, "contacts.csv", b"x")
    add(cli, customer, "not-the-password")
    result = cli("source", "fetch", "acme", "nightly")
    assert result.returncode == 1
    assert "login refused" in result.stderr and "not-the-password" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("Error: ")
    listed = cli("source", "list").stdout
    assert "1 failed run(s) in a row" in listed and "not-the-password" not in listed


@pytest.mark.parametrize(("options", "extra", "message"), [
    (["--url", "http://u@h/c.csv"], {}, "must start with ftp://, ftps:// or sftp://"),
    (["--schedule", "daily"], {}, "bad schedule 'daily'"),
    (["--timezone", "Nowhere/Town"], {}, "unknown time zone"),
    ([], {"DROPIMPORT_SECRET_KEY": ""}, "`dropimport source new-key`"),
])
def test_source_add_errors_are_one_clear_line(cli, options, extra, message):
    args = {"--url": "ftp://u@h/contacts.csv", "--schedule": "0 6 * * *"}
    args.update(dict(zip(options[::2], options[1::2], strict=True)))
    result = cli("source", "add", "acme", "nightly", *[x for kv in args.items() for x in kv],
                 "--password-stdin", input="pw\n", **extra)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_source_add_warns_when_no_template_names_the_file(cli, customer):
    result = add(cli, customer)
    assert result.returncode == 0
    assert "no template of account acme names contacts.csv" in result.stderr


def test_a_secret_may_be_referenced_instead(cli, customer):
    put(customer.root, "contacts.csv", b"e-mail\r\na@b.co\r\n")
    url = f"ftp://{USER}@127.0.0.1:{customer.port}/contacts.csv"
    added = cli("source", "add", "acme", "nightly", "--url", url, "--secret", "env:ACME_FTP_PW",
                "--schedule", "0 6 * * *")
    assert added.returncode == 0, added.stderr
    assert "env:ACME_FTP_PW" in cli("source", "list", "--json").stdout
    fetched = cli("source", "fetch", "acme", "nightly", ACME_FTP_PW=PASSWORD)
    assert fetched.returncode == 0, fetched.stderr
    missing = cli("source", "fetch", "acme", "nightly")
    assert "environment variable ACME_FTP_PW (the password) is not set" in missing.stderr
