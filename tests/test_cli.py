"""The `dropimport` command line: a contract scripts and operators rely on."""

import json
import subprocess
import time

import pytest
from click.testing import CliRunner

from dropimport.cli import account
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


@pytest.fixture
def account_cli(home):
    """`dropimport account ...` run in this process on the test's home."""
    settings = Settings.from_env({"DROPIMPORT_HOME": str(home.root)})

    def run(*args, input=None):
        return CliRunner().invoke(account, args, obj=settings, input=input)
    return run


def fingerprint(line, tmp_path):
    """The fingerprint `ssh-keygen -lf` prints for a public key's line."""
    (tmp_path / "listed.pub").write_text(line)
    return subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "listed.pub")], check=True,
                          capture_output=True, text=True).stdout.split()[1]


def test_account_create_and_list(cli, tmp_path):
    created = cli("account", "create", "acme", "--ftp-user", "acme-ftp", "--password-stdin",
                  input="correct horse battery\n")
    assert created.returncode == 0, created.stderr
    listed = json.loads(cli("account", "list", "--json").stdout)
    assert listed == [{"name": "acme", "ftp_user": "acme-ftp",
                       "created_at": listed[0]["created_at"], "templates": [],
                       "sftp_auth": "both", "keys": []}]
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


def test_account_keys_are_added_listed_and_removed(account_cli, tmp_path, public_key):
    account_cli("create", "acme", "--ftp-user", "acme", "--password-stdin", input="pw\n")
    # When a key is added from its .pub file, and another, without a comment, from stdin
    jo, al = public_key("jo@laptop"), public_key("")
    (tmp_path / "jo.pub").write_text(jo)
    added = account_cli("add-key", "acme", "--key-file", str(tmp_path / "jo.pub"))
    added_stdin = account_cli("add-key", "acme", "--key-file", "-", input=al)
    # Then each is named by its fingerprint, type and comment
    jo_print, al_print = fingerprint(jo, tmp_path), fingerprint(al, tmp_path)
    assert (added.exit_code, added.stdout) == (
        0, f"key {jo_print} (ssh-ed25519, jo@laptop) added to account acme\n")
    assert added_stdin.stdout == f"key {al_print} (ssh-ed25519) added to account acme\n"
    # And listed, in a table and in JSON as the account keeps them
    header, *rows = account_cli("list-keys", "acme").stdout.splitlines()
    assert header.split() == ["FINGERPRINT", "TYPE", "ADDED", "COMMENT"]
    assert [row.split()[:2] + row.split()[3:] for row in rows] == [
        [jo_print, "ssh-ed25519", "jo@laptop"], [al_print, "ssh-ed25519"]]
    keys = json.loads(account_cli("list-keys", "acme", "--json").stdout)
    assert [(k["key"], k["fingerprint"], k["comment"]) for k in keys] == [
        (" ".join(jo.split()[:2]), jo_print, "jo@laptop"), (al.strip(), al_print, "")]
    # And counted by `account list`, beside how the account logs in over SFTP
    [listed] = json.loads(account_cli("list", "--json").stdout)
    assert (listed["sftp_auth"], listed["keys"]) == ("both", [jo_print, al_print])
    header, row = account_cli("list").stdout.splitlines()
    assert header.split()[4:7] == ["SFTP", "AUTH", "KEYS"]
    assert row.split()[3:5] == ["both", "2"]
    # When one is removed by its fingerprint, the other remains
    removed = account_cli("remove-key", "acme", jo_print)
    assert removed.stdout == f"key {jo_print} removed from account acme\n"
    assert [k["fingerprint"] for k in json.loads(
        account_cli("list-keys", "acme", "--json").stdout)] == [al_print]


def test_account_key_errors_are_one_clear_line(account_cli, tmp_path, public_key):
    account_cli("create", "acme", "--ftp-user", "acme", "--password-stdin", input="pw\n")
    key = public_key()
    account_cli("add-key", "acme", "--key-file", "-", input=key)
    private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n"
    for args, input, message in [
        (["add-key", "acme", "--key-file", "-"], private,
         "Error: this is a private key: give the .pub file\n"),
        (["add-key", "acme", "--key-file", "-"], key,
         f"Error: account 'acme' already has key {fingerprint(key, tmp_path)}\n"),
        (["add-key", "ghost", "--key-file", "-"], key, "Error: no account 'ghost'\n"),
        (["remove-key", "acme", "SHA256:nope"], None,
         "Error: account 'acme' has no key SHA256:nope\n"),
        (["list-keys", "ghost"], None, "Error: no account 'ghost'\n"),
    ]:
        result = account_cli(*args, input=input)
        assert (result.exit_code, result.stderr) == (1, message), args
    # A binary file given by mistake is not a key either
    (tmp_path / "id_ed25519.png").write_bytes(b"\x89PNG\x00\xff")
    binary = account_cli("add-key", "acme", "--key-file", str(tmp_path / "id_ed25519.png"))
    assert binary.exit_code == 1
    assert binary.stderr.startswith("Error: not an OpenSSH public key: unknown key type")
    assert len(json.loads(account_cli("list-keys", "acme", "--json").stdout)) == 1


def test_an_account_on_keys_alone_without_a_key_is_warned_of(account_cli, public_key):
    # When an account is created to log in over SFTP with keys only, it is warned it cannot yet
    created = account_cli("create", "acme", "--ftp-user", "acme", "--password-stdin",
                          "--sftp-auth", "keys", input="pw\n")
    warning = ("warning: account acme cannot log in over SFTP until a key is added "
               "(dropimport account add-key)\n")
    assert (created.exit_code, created.stderr) == (0, warning)
    assert json.loads(account_cli("list", "--json").stdout)[0]["sftp_auth"] == "keys"
    # And no longer once it has a key, or may use its password
    added = account_cli("add-key", "acme", "--key-file", "-", input=public_key())
    assert (added.exit_code, added.stderr) == (0, "")
    assert account_cli("update", "acme", "--sftp-auth", "keys").stderr == ""
    # When its last key is removed, it is warned again
    [key] = json.loads(account_cli("list-keys", "acme", "--json").stdout)
    assert account_cli("remove-key", "acme", key["fingerprint"]).stderr == warning
    assert account_cli("update", "acme", "--sftp-auth", "password").stderr == ""
    assert json.loads(account_cli("list", "--json").stdout)[0]["sftp_auth"] == "password"
    # And a mode that is not one of the three is refused by the option
    assert account_cli("update", "acme", "--sftp-auth", "keys-only").exit_code == 2


def test_imports_preview_says_what_a_local_file_would_change_and_records_nothing(cli,
                                                                                  tmp_path):
    cli("account", "create", "acme", "--ftp-user", "acme", "--password-stdin", input="pw\n")
    cli("template", "set", "acme", str(DEMO / "template.json"))
    sample = tmp_path / "tonight.csv"
    sample.write_text("E-mail;Prénom;Nom;Ville\r\njo@x.com;Jo;Doe;Lyon\r\nbad;B;C;D\r\n",
                      encoding="utf-8")
    shown = cli("imports", "preview", "acme", str(sample), "--as", "contacts.csv")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(
        "contacts.csv: previewed, 2 rows: 1 would be created, 0 updated, 0 unchanged, "
        "0 skipped, 1 rejected")
    assert "rejected line 3: invalid e-mail 'bad'" in shown.stdout
    assert json.loads(cli("imports", "list", "--json").stdout) == []
    # Under a name no template expects, it is refused as an upload would be
    refused = json.loads(cli("imports", "preview", "acme", str(sample), "--json").stdout)
    assert (refused["status"], refused["reason"]) == (
        "rejected", "no template for 'tonight.csv' (this account's templates: contacts.csv)")
