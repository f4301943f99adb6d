import copy
import json
import os

import pytest

from agent.completion import announced
from schemas import SchemaError, check_template, validate
from schemas.settings import Settings, redact
from tests.conftest import DEMO_SOURCE


def test_demo_template_is_valid(demo_template):
    assert check_template(demo_template) is demo_template


def test_the_demo_waits_for_a_marker_that_announces_its_rows():
    # The demo `dropimport run --demo` serves: its sample, imported once its marker comes
    template = check_template(json.loads((DEMO_SOURCE / "template.json").read_text("utf-8")))
    marker = DEMO_SOURCE / (template["file"] + template["completion"]["marker"])
    expected, ignored = announced(marker.read_text("utf-8"))
    sample = (DEMO_SOURCE / template["file"]).read_text("utf-8").splitlines()
    assert (expected, ignored) == ({"rows": len(sample) - 1}, [])


@pytest.mark.parametrize("fields", [
    {"external_id": {"column": "Nom"}},
    {"external_id": {"column": "Nom", "type": "integer"}},
    {"phone": {"column": "Nom", "type": "phone", "region": "FR"}},
])
def test_the_standard_keys_take_their_own_types(demo_template, fields):
    template = {**demo_template, "fields": {**demo_template["fields"], **fields}}
    assert check_template(template) is template


@pytest.mark.parametrize("max_shrink", ["off", "50%", "0%", "100%", "12.5%"])
def test_max_shrink_is_a_share_or_off(demo_template, max_shrink):
    assert check_template({**demo_template, "max_shrink": max_shrink})["max_shrink"] == max_shrink


def test_a_template_may_have_as_many_columns_as_a_header(demo_template):
    columns = [*demo_template["columns"], *(f"c{n}" for n in range(2000 - 4))]
    assert check_template({**demo_template, "columns": columns})["columns"] == columns


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t["fields"]["email"].update(type="mail"),
     "fields.email.type: 'mail' is not one of ['text', 'email', 'phone',"),
    (lambda t: t.pop("columns"), "(top level): 'columns' is a required property"),
    (lambda t: t["fields"]["city"].update(column="Town"),
     "fields.city.column: 'Town' is not one of the columns"),
    (lambda t: t["fields"].pop("email"), "match_on: field 'email' is not defined in fields"),
    (lambda t: t.update(file="../etc/passwd"), "file: '../etc/passwd' does not match"),
    (lambda t: t.update(modes="upsert"),
     "(top level): Additional properties are not allowed ('modes'"),
    (lambda t: t.update(expected={"cron": "0 25 * * *", "grace": "2h"}),
     "expected.cron: '0 25 * * *' is not a five-field cron expression"),
    (lambda t: t.update(expected={"cron": "0 6 * * * 0", "grace": "2h"}),
     "expected.cron: '0 6 * * * 0' is not a five-field cron expression"),
    (lambda t: t.update(expected={"cron": "0 6 * * *", "grace": "2 hours"}),
     "expected.grace: '2 hours' does not match"),
    (lambda t: t.update(expected={"cron": "0 6 * * *"}),
     "expected: 'grace' is a required property"),
    (lambda t: t.update(expected={"cron": "0 6 * * *", "grace": "2h", "timezone": "Paris"}),
     "expected.timezone: 'Paris' is not a time zone"),
    (lambda t: t["fields"]["email"].update(type="integer"),
     "fields.email.type: the standard key email is of type email, not 'integer'"),
    (lambda t: t["fields"]["email"].pop("type"),
     "fields.email.type: the standard key email is of type email, not 'text'"),
    (lambda t: t["fields"].update(phone={"column": "Nom"}),
     "fields.phone.type: the standard key phone is of type phone, not 'text'"),
    (lambda t: t["fields"].update(external_id={"column": "Nom", "type": "date",
                                               "format": "%d/%m/%Y"}),
     "fields.external_id.type: the standard key external_id is of type text or integer, "
     "not 'date'"),
    (lambda t: t.update(max_shrink="half"), "max_shrink: 'half' does not match '^(off|"),
    (lambda t: t.update(columns=[f"c{n}" for n in range(2001)]), "columns: ['c0', 'c1',"),
])
def test_invalid_template_names_the_path_and_the_problem(demo_template, change, message):
    # Given a template with one mistake
    template = copy.deepcopy(demo_template)
    change(template)
    # Then the error starts with the JSON path and says what is wrong
    with pytest.raises(SchemaError) as error:
        check_template(template)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("expected", [
    {"cron": "0 6 * * *", "grace": "2h"}, {"cron": "30 5 * * 1-5", "grace": "1h30m"},
    {"cron": "@daily", "grace": "1d", "timezone": "Europe/Paris"},
])
def test_a_template_may_say_when_its_file_is_expected(demo_template, expected):
    assert check_template({**demo_template, "expected": expected})["expected"] == expected


def test_file_event_requires_a_sha256():
    event = {
        "import_id": "20261125-083512-123456-9f3a", "account": "acme", "file": "contacts.csv",
        "spool_path": "spool/acme/20261125-083512-123456-9f3a/contacts.csv", "size": 3,
        "sha256": "0" * 64, "received_at": "2026-11-25T08:35:12.123456+00:00",
    }
    assert validate("file-event", event) is event
    with pytest.raises(SchemaError, match="sha256: 'abc' does not match"):
        validate("file-event", {**event, "sha256": "abc"})


def test_settings_defaults_work_on_a_laptop(tmp_path):
    settings = Settings.from_env({"XDG_DATA_HOME": str(tmp_path)})
    assert settings.home.root == tmp_path / "dropimport"
    assert settings.broker_url == "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert settings.database_url == f"sqlite:///{tmp_path / 'dropimport' / 'contacts.db'}"
    assert (settings.ftp_host, settings.ftp_port, settings.ftp_passive_ports) == (
        "127.0.0.1", 2121, None)
    assert (settings.sftp_host, settings.sftp_port, settings.sftp_host_keys) == (
        "127.0.0.1", 2222, ())
    assert settings.describe()["DROPIMPORT_SFTP_HOST_KEY"] == str(settings.home.ssh_host_key)


def test_sftp_settings(tmp_path):
    settings = Settings.from_env({"DROPIMPORT_FTP_HOST": "0.0.0.0", "DROPIMPORT_SFTP_PORT": "22",
                                  "DROPIMPORT_SFTP_HOST_KEY": f"{tmp_path}/ed, {tmp_path}/rsa"})
    assert (settings.sftp_host, settings.sftp_port, settings.sftp_host_keys) == (
        "0.0.0.0", 22, (tmp_path / "ed", tmp_path / "rsa"))
    assert settings.describe()["DROPIMPORT_SFTP_HOST_KEY"] == f"{tmp_path}/ed,{tmp_path}/rsa"
    assert Settings.from_env({"DROPIMPORT_SFTP_PORT": "off"}).sftp_port is None
    assert Settings.from_env({"DROPIMPORT_SFTP_PORT": "off"}).describe()[
        "DROPIMPORT_SFTP_PORT"] == "off"


def test_settings_from_environment(tmp_path):
    settings = Settings.from_env({
        "DROPIMPORT_HOME": str(tmp_path),
        "DROPIMPORT_BROKER_URL": "amqp://u:secret@mq:5672/imports",
        "DROPIMPORT_DATABASE_URL": "postgresql://app:pw@db/contacts",
        "DROPIMPORT_FTP_HOST": "0.0.0.0",
        "DROPIMPORT_FTP_PORT": "21",
        "DROPIMPORT_FTP_PASSIVE_PORTS": "60000-60100",
        "DROPIMPORT_SECRET_KEY": "fernet-key-secret",
    })
    assert settings.ftp_passive_ports == range(60000, 60101)
    assert settings.secret_key == "fernet-key-secret"
    described = settings.describe()
    assert described["DROPIMPORT_BROKER_URL"] == "amqp://u:***@mq:5672/imports"
    assert described["DROPIMPORT_DATABASE_URL"] == "postgresql://app:***@db/contacts"
    assert described["DROPIMPORT_SECRET_KEY"] == "***"
    assert "secret" not in str(described)
    assert "fernet-key-secret" not in repr(settings)


def test_reader_processes_default_to_the_cores_but_one(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert Settings.from_env({}).reader_processes == 7
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert Settings.from_env({}).reader_processes == 1
    settings = Settings.from_env({"DROPIMPORT_READER_PROCESSES": "3"})
    assert settings.reader_processes == 3
    assert settings.describe()["DROPIMPORT_READER_PROCESSES"] == 3
    assert Settings.from_env({"DROPIMPORT_READER_PROCESSES": "0"}).reader_processes == 1


@pytest.mark.parametrize(("name", "value"), [
    ("DROPIMPORT_FTP_PORT", "ftp"), ("DROPIMPORT_FTP_PASSIVE_PORTS", "60100-60000"),
    ("DROPIMPORT_READER_PROCESSES", "two"), ("DROPIMPORT_SFTP_PORT", "70000"),
])
def test_bad_settings_name_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_smtp_settings_with_the_port_of_their_tls_mode(tmp_path):
    assert Settings.from_env({}).smtp.host is None  # no relay: no e-mail
    assert Settings.from_env({"DROPIMPORT_SMTP_TLS": "ssl"}).smtp.port == 465
    settings = Settings.from_env({
        "DROPIMPORT_SMTP_HOST": "smtp.example.com", "DROPIMPORT_SMTP_USER": "relay",
        "DROPIMPORT_SMTP_PASSWORD": "smtp-secret", "DROPIMPORT_SMTP_FROM": "ops@example.com",
    })
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.tls, settings.smtp.sender) == (
        "smtp.example.com", 587, "starttls", "ops@example.com")
    assert settings.describe()["DROPIMPORT_SMTP_PASSWORD"] == "***"
    assert "smtp-secret" not in str(settings.describe())
    with pytest.raises(ValueError, match="DROPIMPORT_SMTP_TLS: 'tls' is not one of"):
        Settings.from_env({"DROPIMPORT_SMTP_TLS": "tls"})


def test_redact_leaves_urls_without_password():
    assert redact("sqlite:////var/x.db") == "sqlite:////var/x.db"


@pytest.mark.parametrize(("host", "mode"), [
    ("127.0.0.1", "off"), ("::1", "off"), ("localhost", "off"), ("0.0.0.0", "required"),
    ("ftp.example.com", "required"), ("10.1.2.3", "required"),
])
def test_ftps_is_required_by_default_beyond_the_loopback(host, mode):
    assert Settings.from_env({"DROPIMPORT_FTP_HOST": host}).ftp_tls == mode


def test_ftps_mode_is_checked():
    with pytest.raises(ValueError, match="DROPIMPORT_FTP_TLS: 'yes' is not one of"):
        Settings.from_env({"DROPIMPORT_FTP_TLS": "yes"})
