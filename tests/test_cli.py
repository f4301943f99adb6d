"""The `dropimport` command line: a contract scripts and operators rely on."""

import json
import subprocess
import time

import pytest

from schemas import template_with_defaults
from schemas.settings import Settings
from tests.conftest import DEMO
from tests.harness import DROPIMPORT
from tests.worker.conftest import spool
from worker.importer import Importer


@pytest.fixture
def cli(tmp_path):
    env = {"DROPIMPORT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}

    def run(*args, input=None):
        return subprocess.run([DROPIMPORT, *args], env=env, input=input, capture_output=True,
                              text=True, timeout=60)
    return run


def test_account_create_and_list(cli, tmp_path):
    created = cli("account", "create", "acme", "--ftp-user", "acme-ftp", "--password-stdin",
                  input="correct horse battery\n")
    assert created.returncode == 0, created.stderr
    listed = json.loads(cli("account", "list", "--json").stdout)
    assert listed == [{"name": "acme", "ftp_user": "acme-ftp",
                       "created_at": listed[0]["created_at"], "templates": []}]
    # The password appears in no file of the home, only its argon2id hash
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            assert b"correct horse" not in path.read_bytes()


def test_account_notifications_are_set_and_the_webhook_secret_shown_once(cli, tmp_path):
    # When an account is created with an e-mail address and a webhook
    created = cli("account", "create", "acme", "--ftp-user", "acme-ftp", "--password-stdin",
                  "--notify-email", "it@acme.example", "--webhook-url", "https://acme.example/h",
                  input="pw\n")
    assert created.returncode == 0, created.stderr
    # Then the webhook's secret is shown once, kept with the account, and never listed
    secret = created.stdout.split("webhook secret (shown once; ")[1].split(": ")[1].strip()
    document = json.loads((tmp_path / "home" / "accounts" / "acme.json").read_text())
    assert document["notify"]["webhook"] == {"url": "https://acme.example/h", "secret": secret}
    [listed] = json.loads(cli("account", "list", "--json").stdout)
    assert listed["notify"] == {"email": ["it@acme.example"], "webhook": "https://acme.example/h"}
    assert secret not in cli("account", "list").stdout
    # When the events change, the secret stays; a new one is made only when asked
    updated = cli("account", "update", "acme", "--notify-on", "imported", "--notify-on", "failed")
    assert "secret" not in updated.stdout
    assert json.loads(cli("account", "list", "--json").stdout)[0]["notify"]["on"] == [
        "imported", "failed"]
    rotated = cli("account", "update", "acme", "--new-webhook-secret")
    assert "webhook secret (shown once" in rotated.stdout and secret not in rotated.stdout
    # And '' removes a channel; a bad address is refused in one line
    cli("account", "update", "acme", "--webhook-url", "")
    assert "webhook" not in json.loads(cli("account", "list", "--json").stdout)[0]["notify"]
    bad = cli("account", "update", "acme", "--notify-email", "not-an-address")
    assert bad.returncode != 0 and bad.stderr.startswith("Error: notify.email.0: 'not-an-address'")


@pytest.mark.parametrize(("args", "message"), [
    (["acme", "--ftp-user", "other"], "Error: account 'acme' already exists"),
    (["globex", "--ftp-user", "acme-ftp"],
     "Error: FTP user 'acme-ftp' already belongs to another account"),
    (["Globex!", "--ftp-user", "g"], "Error: bad account name 'Globex!'"),
])
def test_account_create_errors_are_one_clear_line(cli, args, message):
    cli("account", "create", "acme", "--ftp-user", "acme-ftp", "--password-stdin", input="pw\n")
    result = cli("account", "create", *args, "--password-stdin", input="pw\n")
    assert result.returncode != 0
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


def test_account_create_needs_the_password_on_stdin(cli):
    result = cli("account", "create", "acme", "--ftp-user", "acme")
    assert result.returncode != 0
    assert "--password-stdin" in result.stderr


def test_invalid_template_names_the_json_path(cli, tmp_path):
    cli("account", "create", "acme", "--ftp-user", "acme", "--password-stdin", input="pw\n")
    template = json.loads((DEMO / "template.json").read_text())
    template["fields"]["email"]["type"] = "mail"
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template))
    result = cli("template", "set", "acme", str(path))
    assert result.returncode != 0
    assert f"{path}: fields.email.type: 'mail' is not one of" in result.stderr
    assert json.loads(cli("template", "show", "acme").stdout) == []


def test_template_set_and_show(cli):
    cli("account", "create", "acme", "--ftp-user", "acme", "--password-stdin", input="pw\n")
    assert cli("template", "set", "acme", str(DEMO / "template.json")).returncode == 0
    shown = json.loads(cli("template", "show", "acme", "contacts.csv").stdout)
    # With its defaults, as the worker reads it
    assert shown == template_with_defaults(json.loads((DEMO / "template.json").read_text()))
    missing = cli("template", "show", "acme", "other.csv")
    assert missing.returncode != 0
    assert "no template for 'other.csv'" in missing.stderr


def test_run_without_rabbitmq_exits_at_once_naming_the_url(cli, tmp_path):
    started = time.monotonic()
    result = subprocess.run(
        [DROPIMPORT, "run"], capture_output=True, text=True, timeout=30,
        env={"DROPIMPORT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin",
             "DROPIMPORT_BROKER_URL": "amqp://guest:hunter2@127.0.0.1:1/%2F"},
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 10
    [line] = result.stderr.strip().splitlines()
    assert "cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/%2F" in line
    assert "rabbitmq-server" in line
    assert "hunter2" not in result.stderr + result.stdout


def test_imports_show_unknown_id(cli):
    result = cli("imports", "show", "20261125-000000-000000-0000")
    assert result.returncode != 0
    assert "no import '20261125-000000-000000-0000'" in result.stderr


def test_imports_list_json_empty(cli):
    result = cli("imports", "list", "--json")
    assert (result.returncode, json.loads(result.stdout)) == (0, [])


def test_contacts_export_spells_booleans_as_the_boolean_type_reads_them(cli, tmp_path):
    # Given contacts imported with a boolean field
    cli("account", "create", "acme", "--ftp-user", "acme", "--password-stdin", input="pw\n")
    template = {**json.loads((DEMO / "template.json").read_text()),
                "fields": {"email": {"column": "E-mail", "type": "email"},
                           "optin": {"column": "Optin", "type": "boolean"}},
                "columns": ["E-mail", "Optin"]}
    (tmp_path / "template.json").write_text(json.dumps(template))
    assert cli("template", "set", "acme", str(tmp_path / "template.json")).returncode == 0
    settings = Settings.from_env({"DROPIMPORT_HOME": str(tmp_path / "home")})
    importer = Importer.from_settings(settings)
    try:
        record = importer.run(spool(settings.home, "acme", "E-mail;Optin\r\njo@x.com;oui\r\n"
                                                          "al@x.com;non\r\n"))
    finally:
        importer.store.close()
    assert record["created"] == 2, record
    # When they are exported as CSV, and as JSON lines
    csv_lines = cli("contacts", "export", "acme", "--format", "csv").stdout.splitlines()
    jsonl = [json.loads(line) for line in
             cli("contacts", "export", "acme", "--format", "jsonl").stdout.splitlines()]
    # Then both say true and false, as the boolean type reads them back
    assert sorted(csv_lines) == ["al@x.com,false,false", "email,optin,unsubscribed",
                                 "jo@x.com,true,false"]
    assert sorted((c["email"], c["optin"], c["unsubscribed"]) for c in jsonl) == [
        ("al@x.com", False, False), ("jo@x.com", True, False)]


def test_imports_retry_of_an_older_file_over_a_newer_one_asks_for_force(cli, tmp_path):
    # Given an import rejected for a template mistake, then a newer one of the file imported
    cli("account", "create", "acme", "--ftp-user", "acme", "--password-stdin", input="pw\n")
    settings = Settings.from_env({"DROPIMPORT_HOME": str(tmp_path / "home")})
    importer = Importer.from_settings(settings)
    try:
        older = importer.run(spool(settings.home, "acme", "E-mail;Prénom;Nom;Ville\r\n"
                                                         "jo@x.com;Jo;Doe;Lyon\r\n"))
        assert older["status"] == "rejected"  # no template yet
        cli("template", "set", "acme", str(DEMO / "template.json"))
        importer.run(spool(settings.home, "acme", "E-mail;Prénom;Nom;Ville\r\n"
                                                  "jo@x.com;Jo;Doe;Paris\r\n"))
    finally:
        importer.store.close()
    # When the operator retries the older one, it is refused in one line, nothing queued
    refused = cli("imports", "retry", older["id"])
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: import ") and "--force" in refused.stderr
    assert [r["status"] for r in json.loads(cli("imports", "list", "--json").stdout)] == [
        "imported", "rejected"]
