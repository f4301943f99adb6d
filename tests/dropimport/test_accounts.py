import json

import pytest

from dropimport.accounts import AccountError, parse_size, verify_password, with_defaults
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


def test_keys_are_added_listed_and_removed_by_fingerprint(registry, home, public_key):
    registry.create("acme", "acme", "pw")
    # When a key is added, with its comment and a trailing newline as in its .pub file
    line = public_key("jo@laptop")
    entry = registry.add_key("acme", line)
    # Then the account keeps it canonical, with its fingerprint, comment and time of addition
    kind, data, _ = line.split()
    assert entry == {"key": f"{kind} {data}", "fingerprint": entry["fingerprint"],
                     "comment": "jo@laptop", "added_at": entry["added_at"]}
    assert entry["fingerprint"].startswith("SHA256:")
    assert json.loads((home.accounts / "acme.json").read_text())["ssh_keys"] == [entry]
    # And the same key again, under another comment, is refused naming its fingerprint
    with pytest.raises(AccountError) as duplicate:
        registry.add_key("acme", f"{kind} {data} other comment")
    assert str(duplicate.value) == f"account 'acme' already has key {entry['fingerprint']}"
    other = registry.add_key("acme", public_key("al@desk"))
    assert registry.keys("acme") == [entry, other]
    # When one is removed by its fingerprint, given without its SHA256: prefix
    assert registry.remove_key("acme", entry["fingerprint"].removeprefix("SHA256:")) == entry
    # Then the other remains, and the removed one is no longer there to remove
    assert registry.keys("acme") == [other]
    with pytest.raises(AccountError) as absent:
        registry.remove_key("acme", entry["fingerprint"])
    assert str(absent.value) == f"account 'acme' has no key {entry['fingerprint']}"


def test_a_refused_key_is_an_account_error_and_changes_nothing(registry, home):
    registry.create("acme", "acme", "pw")
    before = (home.accounts / "acme.json").read_text()
    with pytest.raises(AccountError) as refused:
        registry.add_key("acme", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n")
    assert str(refused.value) == "this is a private key: give the .pub file"
    with pytest.raises(AccountError, match="no account 'ghost'"):
        registry.keys("ghost")
    assert (home.accounts / "acme.json").read_text() == before


def test_sftp_auth_at_creation_and_update_with_its_defaults(registry):
    # An account made before SFTP has its defaults: both ways, no key
    registry.create("acme", "acme", "pw")
    assert "sftp_auth" not in registry.get("acme")
    account = with_defaults(registry.get("acme"))
    assert (account["sftp_auth"], account["ssh_keys"]) == ("both", [])
    # A default is a copy: changing one account's does not change the next one's
    account["ssh_keys"].append("x")
    assert with_defaults(registry.get("acme"))["ssh_keys"] == []
    registry.create("globex", "globex", "pw", sftp_auth="keys")
    assert registry.get("globex")["sftp_auth"] == "keys"
    registry.update("globex", sftp_auth="password")
    assert registry.get("globex")["sftp_auth"] == "password"
    with pytest.raises(AccountError, match="sftp_auth: 'keys-only' is not one of"):
        registry.update("globex", sftp_auth="keys-only")
