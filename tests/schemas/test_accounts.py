import json

import pytest

from schemas import SchemaError
from schemas.accounts import AccountError


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
    assert registry.template("acme", "contacts.csv") == demo_template
    assert registry.template("acme", "nope.csv") is None


def test_set_template_validates(registry, demo_template):
    registry.create("acme", "acme", "pw")
    with pytest.raises(SchemaError):
        registry.set_template("acme", {**demo_template, "mode": "overwrite"})
    with pytest.raises(AccountError, match="no account 'ghost'"):
        registry.set_template("ghost", demo_template)
