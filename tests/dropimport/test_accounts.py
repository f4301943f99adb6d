import json

import pytest

from dropimport.accounts import AccountError, parse_size, verify_password
from schemas import SchemaError, template_with_defaults


def test_create_keeps_only_a_slow_hash(registry, home):
    # When an account is created
    document = registry.create("acme", "acme-ftp", "s3cret pass")
    # Then the password is stored as an argon2id hash, nowhere in clear
    assert document["password_hash"].startswith("$argon2id$")
    stored = (home.accounts / "acme.json").read_text()
    assert "s3cret" not in stored
    assert json.loads(stored) == document
    # And the FTP home exists with its reports folder
    assert home.reports("acme").is_dir()


def test_lookup_by_ftp_user(registry):
    registry.create("acme", "acme-ftp", "pw")
    assert registry.by_ftp_user("acme-ftp")["name"] == "acme"
    assert registry.by_ftp_user("nobody") is None
    assert registry.by_ftp_user("../acme") is None


@pytest.mark.parametrize(("name", "user", "message"), [
    ("acme", "other", "account 'acme' already exists"),
    ("other", "acme-ftp", "FTP user 'acme-ftp' already belongs to another account"),
    ("Bad Name", "x", "bad account name 'Bad Name'"),
    ("ok", "bad user", "bad FTP user 'bad user'"),
])
def test_create_refuses_duplicates_and_bad_names(registry, name, user, message):
    registry.create("acme", "acme-ftp", "pw")
    with pytest.raises(AccountError, match=message):
        registry.create(name, user, "pw")
    # A refused creation leaves no index entry behind
    assert [a["name"] for a in registry.list()] == ["acme"]
    if user != "acme-ftp":
        assert registry.by_ftp_user(user) is None


def test_templates_one_per_file(registry, demo_template):
    registry.create("acme", "acme", "pw")
    registry.set_template("acme", demo_template)
    registry.set_template("acme", {**demo_template, "file": "clients.csv"})
    assert [t["file"] for t in registry.templates("acme")] == ["clients.csv", "contacts.csv"]
    # Loaded with the schema's defaults: the worker reads every option from it
    loaded = registry.template("acme", "contacts.csv")
    assert loaded == template_with_defaults(demo_template)
    assert (loaded["mode"], loaded["duplicates"]) == ("upsert", "last_wins")
    assert registry.template("acme", "nope.csv") is None


def test_set_template_validates(registry, demo_template):
    registry.create("acme", "acme", "pw")
    with pytest.raises(SchemaError):
        registry.set_template("acme", {**demo_template, "mode": "overwrite"})
    with pytest.raises(AccountError, match="no account 'ghost'"):
        registry.set_template("ghost", demo_template)


@pytest.mark.parametrize(("text", "size"), [
    ("5MB", 5_000_000), ("2GiB", 2 * 2**30), ("500k", 500_000), ("1048576", 1048576),
    ("1.5 MiB", 1572864), ("10b", 10),
])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "5XB", "-1MB", "MB"])
def test_bad_sizes(text):
    with pytest.raises(AccountError, match="bad size"):
        parse_size(text)


def test_limits_at_creation_and_update(registry):
    registry.create("acme", "acme", "pw", max_file_size=5_000_000, uploads_per_hour=None)
    assert registry.get("acme")["max_file_size"] == 5_000_000
    assert "uploads_per_hour" not in registry.get("acme")
    registry.update("acme", uploads_per_hour=10, can_delete_reports=True)
    account = registry.get("acme")
    assert (account["max_file_size"], account["uploads_per_hour"],
            account["can_delete_reports"]) == (5_000_000, 10, True)
    with pytest.raises(AccountError, match="uploads_per_hour: 0 is less than the minimum"):
        registry.update("acme", uploads_per_hour=0)


def test_set_password_replaces_the_hash(registry):
    registry.create("acme", "acme", "old")
    before = registry.get("acme")["password_hash"]
    registry.set_password("acme", "new")
    after = registry.get("acme")["password_hash"]
    assert after != before
    assert verify_password(after, "new") and not verify_password(after, "old")
    with pytest.raises(AccountError, match="empty password"):
        registry.set_password("acme", "")


def test_a_glob_template_serves_every_name_it_matches(registry, demo_template):
    registry.create("acme", "acme", "pw")
    registry.set_template("acme", demo_template)
    registry.set_template("acme", {**demo_template, "file": "orders-*.csv"})
    assert registry.template("acme", "orders-2026-11-25.csv")["file"] == "orders-*.csv"
    assert registry.template("acme", "contacts.csv")["file"] == "contacts.csv"
    assert registry.template("acme", "orders.csv") is None


def test_sources_are_validated_and_never_hold_a_password_in_clear(registry):
    registry.create("acme", "acme", "pw")
    source = {"protocol": "sftp", "host": "sftp.acme.com", "port": 22, "user": "it",
              "secret": "env:ACME_PW", "directory": "~", "file": "contacts.csv",
              "schedule": "0 6 * * *"}
    registry.set_source("acme", "nightly", source)
    assert registry.source("acme", "nightly") == {
        **source, "timezone": "UTC", "passive": True, "timeout": 30, "after_download": "keep",
        "stable_seconds": 5, "alert_after": 3}
    with pytest.raises(AccountError, match="secret: 'hunter2' does not match"):
        registry.set_source("acme", "nightly", {**source, "secret": "hunter2"})
    with pytest.raises(AccountError, match="move_to"):
        registry.set_source("acme", "nightly", {**source, "after_download": "move"})
    with pytest.raises(AccountError, match="bad source name"):
        registry.set_source("acme", "Night ly", source)
    registry.remove_source("acme", "nightly")
    with pytest.raises(AccountError, match="has no source 'nightly'"):
        registry.source("acme", "nightly")
