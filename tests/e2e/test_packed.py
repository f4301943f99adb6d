"""Compressed and encrypted files over FTP, end to end: made by the customers' own tools
(gzip, Info-ZIP, Python's zipfile, GnuPG, Sequoia), imported as the file inside; the hostile
and the mistaken ones refused, each with its reason, nothing imported."""

import gzip
import io
import json
import subprocess
import zipfile
from ftplib import error_perm

import pytest

from dropimport import credentials
from tests.conftest import DEMO, sqlite_only
from tests.openpgp import sequoia_encrypt

HEADER = "E-mail;Prénom;Nom;Ville\r\n"


@pytest.fixture
def acme(stopped_system, tmp_path, account_key):
    """Account acme: contacts.csv clear or compressed, secure.csv encrypted to its key."""
    system = stopped_system
    system.env["DROPIMPORT_SECRET_KEY"] = credentials.new_key()
    system.start()
    system.cli("account", "create", "acme", "--ftp-user", "acme-ftp", "--password-stdin",
               input="acme-secret\n")
    template = json.loads((DEMO / "template.json").read_text("utf-8"))
    for name, options in (("contacts.csv", {}), ("secure.csv", {"encryption": "openpgp"})):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(template | {"file": name} | options), "utf-8")
        system.cli("template", "set", "acme", str(path))
    shown = system.cli("account", "pgp-key", "acme", "--import", "-",
                       input=account_key.secret_key)
    assert shown.stdout == account_key.public_key  # what the customer encrypts to
    return system


def rows(tag, count=2):
    return HEADER + "".join(f"{tag}{i}@example.com;P;{tag};Lyon\r\n" for i in range(count))


def upload(system, path, name=None):
    with system.ftp("acme-ftp", "acme-secret") as ftp:
        return ftp.storbinary(f"STOR {name or path.name}", io.BytesIO(path.read_bytes()))


def made(folder, tag, name="contacts.csv"):
    """A fresh folder holding `name` with the rows of `tag`."""
    folder = folder / tag
    folder.mkdir()
    (folder / name).write_text(rows(tag), "utf-8")
    return folder


def run(folder, *command):
    subprocess.run(command, cwd=folder, check=True, capture_output=True, timeout=60)


def test_every_accepted_form_is_imported_over_ftp(acme, tmp_path, pgp_customer, account_key):
    uploads = []
    folder = made(tmp_path, "gzip")
    run(folder, "gzip", "contacts.csv")
    uploads.append(folder / "contacts.csv.gz")
    folder = made(tmp_path, "infozip")
    run(folder, "zip", "-q", "contacts.csv.zip", "contacts.csv")
    uploads.append(folder / "contacts.csv.zip")
    folder = tmp_path / "zipfile"
    folder.mkdir()
    with zipfile.ZipFile(folder / "contacts.csv.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", "exported by our CRM")
        archive.writestr("export/contacts.csv", rows("zipfile"))
    uploads.append(folder / "contacts.csv.zip")
    folder = made(tmp_path, "gpg", "secure.csv")
    uploads.append(pgp_customer.encrypt(folder / "secure.csv", folder / "secure.csv.pgp"))
    folder = made(tmp_path, "armoured", "secure.csv")
    uploads.append(pgp_customer.encrypt(folder / "secure.csv", folder / "secure.csv.asc",
                                        "--armor", "--sign"))
    folder = made(tmp_path, "gzipgpg", "secure.csv")
    run(folder, "gzip", "secure.csv")
    uploads.append(pgp_customer.encrypt(folder / "secure.csv.gz", folder / "secure.csv.gz.gpg"))
    folder = made(tmp_path, "zippgp", "secure.csv")
    run(folder, "zip", "-q", "secure.csv.zip", "secure.csv")
    uploads.append(pgp_customer.encrypt(folder / "secure.csv.zip", folder / "secure.csv.zip.pgp"))
    folder = made(tmp_path, "sequoia", "secure.csv")
    uploads.append(sequoia_encrypt(folder / "secure.csv", folder / "secure.csv.gpg",
                                   account_key.public_key))
    # When each is uploaded over FTP, in turn
    for path in uploads:
        assert upload(acme, path).startswith("226")
    # Then each is imported as the file inside, recorded under the name uploaded
    records = acme.wait_for_imports(len(uploads), timeout=60)
    assert sorted((r["file"], r["status"], r["created"]) for r in records) == sorted(
        (path.name, "imported", 2) for path in uploads), [r.get("reason") for r in records]
    contacts = acme.contacts("acme")
    tags = ("gzip", "infozip", "zipfile", "gpg", "armoured", "gzipgpg", "zippgp", "sequoia")
    assert sorted(contacts) == sorted(f"{tag}{i}@example.com" for tag in tags for i in (0, 1))
    assert contacts["sequoia1@example.com"]["last_name"] == "sequoia"
    # And the customer reads each one's report
    with acme.ftp("acme-ftp", "acme-secret") as ftp:
        reports = ftp.nlst("reports")
    assert all(f"{r['file']}.{r['id']}.json" in reports for r in records)


@sqlite_only
def test_hostile_and_mistaken_files_are_refused_with_their_reason(acme, tmp_path, pgp_customer,
                                                                  pgp_stranger):
    # Given a customer whose files must be signed by its own key
    key_file = tmp_path / "customer.asc"
    key_file.write_text(pgp_customer.public_key)
    acme.cli("account", "pgp-signer", "acme", "--key-file", str(key_file))
    # When its system sends a clear file where encryption is required, it is refused at once,
    # the reply naming the names expected, and nothing is received
    folder = made(tmp_path, "clear", "secure.csv")
    with pytest.raises(error_perm, match=r"^553 .*must be encrypted with OpenPGP.*"
                                         r"secure\.csv\.pgp, \.gpg or \.asc"):
        upload(acme, folder / "secure.csv")
    # And the files the worker must read to judge are rejected, each with its reason
    refused = {}
    bomb = tmp_path / "contacts.csv.gz"
    with gzip.open(bomb, "wb") as out:
        out.write(HEADER.encode())
        for _ in range(100):
            out.write(b"\0" * (1 << 20))
    refused["contacts.csv.gz"] = (bomb, "refused as a possible decompression bomb")
    slip = tmp_path / "contacts.csv.zip"
    with zipfile.ZipFile(slip, "w") as archive:
        archive.writestr("../../../contacts.csv", rows("slip"))
    refused["contacts.csv.zip"] = (slip, "unsafe name '../../../contacts.csv'")
    folder = made(tmp_path, "cut")
    run(folder, "gzip", "contacts.csv")
    cut = folder / "contacts.csv.gz"
    cut.write_bytes(cut.read_bytes()[:-4])
    refused["cut"] = (cut, "the gzip stream is cut before its end")
    folder = made(tmp_path, "unsigned", "secure.csv")
    refused["secure.csv.pgp"] = (pgp_customer.encrypt(
        folder / "secure.csv", folder / "secure.csv.pgp"), "signature missing")
    folder = made(tmp_path, "stranger", "secure.csv")
    refused["secure.csv.gpg"] = (pgp_stranger.encrypt(
        folder / "secure.csv", folder / "secure.csv.gpg", "--sign"), "signed by unknown key")
    for path, _ in refused.values():
        upload(acme, path)
    records = acme.wait_for_imports(len(refused), timeout=60)
    reasons = sorted((r["status"], r["reason"]) for r in records)
    for path, reason in refused.values():
        assert any(status == "rejected" and r.startswith(path.name) and reason in r
                   for status, r in reasons), (reason, reasons)
    # And nothing was imported, nothing extracted outside the spool
    assert acme.contacts("acme") == {}
    assert not list(acme.home.parent.glob("contacts.csv")) and not (acme.home / "contacts.csv"
                                                                      ).exists()


@sqlite_only
def test_the_account_key_is_made_shown_and_kept_encrypted(stopped_system):
    system = stopped_system
    system.env["DROPIMPORT_SECRET_KEY"] = credentials.new_key()
    system.cli("account", "create", "acme", "--ftp-user", "acme-ftp", "--password-stdin",
               input="acme-secret\n")
    made = system.cli("account", "pgp-key", "acme", "--generate")
    assert made.stdout.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert "OpenPGP key" in made.stderr
    assert system.cli("account", "pgp-key", "acme", "--show").stdout == made.stdout
    document = json.loads((system.home / "accounts" / "acme.json").read_text())
    assert document["openpgp"]["secret_key"].startswith("fernet:")
    assert "PRIVATE KEY" not in json.dumps(document)
    [listed] = json.loads(system.cli("account", "list", "--json").stdout)
    assert listed["openpgp"] == {"fingerprint": document["openpgp"]["fingerprint"]}
    # A public key is no key pair; a signer that cannot sign is no signer
    failed = system.cli("account", "pgp-key", "acme", "--import", "-", input=made.stdout,
                        check=False)
    assert failed.returncode != 0 and "public key only" in failed.stderr
    # Without DROPIMPORT_SECRET_KEY, no secret key is kept in clear
    failed = system.cli("account", "pgp-key", "acme", "--generate", check=False,
                        env={"DROPIMPORT_SECRET_KEY": ""})
    assert failed.returncode != 0 and "DROPIMPORT_SECRET_KEY is not set" in failed.stderr
