"""Importing compressed and encrypted files: the rows of the file inside, in one transaction;
a file that cannot be unpacked whole is rejected with its reason and changes nothing."""

import gzip
import io
import zipfile

import pytest

from dropimport import credentials
from tests.openpgp import signer
from tests.worker.conftest import HEADER, exported, spool
from worker.importer import Importer

ROWS = "".join(f"c{i}@x.fr;N{i};;Lyon\r\n" for i in range(50))


def zipped(data, name="contacts.csv"):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def separate(importer, home):
    """An Importer that reads every file in a process of its own, as a big one is read."""
    return Importer(home, importer.store, separate_process_bytes=0, chunk_rows=7)


@pytest.mark.parametrize("reading", ["thread", "process"])
@pytest.mark.parametrize("file, pack", [("contacts.csv.gz", gzip.compress),
                                        ("contacts.csv.zip", zipped)])
def test_a_compressed_file_is_imported_as_the_file_inside(importer, separate, home, reading,
                                                          file, pack):
    chosen = importer if reading == "thread" else separate
    record = chosen.run(spool(home, "acme", pack((HEADER + ROWS).encode()), file))
    assert (record["status"], record["file"], record["rows"], record["created"]) == (
        "imported", file, 50, 50), record.get("reason")
    assert exported(importer.store, "acme")["c49@x.fr"]["first_name"] == "N49"
    assert record["encoding"] == "utf-8" and record["delimiter"] == ";"


@pytest.mark.parametrize("reading", ["thread", "process"])
def test_a_gzip_cut_after_its_rows_is_rejected_and_nothing_is_imported(importer, separate, home,
                                                                       reading):
    # Given a gzip file cut in its last bytes: every row is there, not its end of stream
    data = gzip.compress((HEADER + ROWS).encode())[:-6]
    chosen = importer if reading == "thread" else separate
    record = chosen.run(spool(home, "acme", data, "contacts.csv.gz"))
    assert record["status"] == "rejected"
    assert record["reason"].startswith("contacts.csv.gz: the gzip stream is cut before its end")
    assert exported(importer.store, "acme") == {}


def test_max_shrink_compares_the_rows_inside_whatever_the_form(importer, home):
    importer.run(spool(home, "acme", HEADER + ROWS))
    fewer = "".join(ROWS.splitlines(keepends=True)[:20])
    record = importer.run(spool(home, "acme", gzip.compress((HEADER + fewer).encode()),
                                "contacts.csv.gz"))
    assert record["status"] == "rejected"
    assert "fewer than the 50 of import" in record["reason"]


def test_a_form_the_template_does_not_take_is_rejected(importer, home, registry, demo_template):
    # A door refuses these names; a pulled file reaches the worker
    registry.set_template("acme", demo_template | {"compression": "none"})
    record = importer.run(spool(home, "acme", gzip.compress((HEADER + ROWS).encode()),
                                "contacts.csv.gz"))
    assert record["status"] == "rejected" and "takes no compressed file" in record["reason"]
    registry.set_template("acme", demo_template)
    assert importer.run(spool(home, "acme", HEADER + ROWS))["status"] == "imported"
    # And the same clear file, once the template requires encryption, is refused, not
    # recorded as identical to the last import
    registry.set_template("acme", demo_template | {"encryption": "openpgp"})
    record = importer.run(spool(home, "acme", HEADER + ROWS))
    assert record["status"] == "rejected"
    assert record["reason"].startswith("'contacts.csv' must be encrypted with OpenPGP")


def test_an_encrypted_file_is_imported_with_the_accounts_key(importer, home, registry,
                                                             demo_template, account_key,
                                                             pgp_customer, tmp_path):
    key = credentials.new_key()
    importer.secret_key = key
    registry.set_template("acme", demo_template | {"encryption": "openpgp"})
    registry.update("acme", openpgp={
        "fingerprint": account_key.fingerprint, "public_key": account_key.public_key,
        "secret_key": credentials.encrypt(account_key.secret_key, key),
        "signer": signer(pgp_customer)})
    plain = tmp_path / "contacts.csv"
    plain.write_text(HEADER + ROWS, encoding="utf-8")
    signed = pgp_customer.encrypt(plain, tmp_path / "signed.pgp", "--sign")
    unsigned = pgp_customer.encrypt(plain, tmp_path / "unsigned.pgp")
    record = importer.run(spool(home, "acme", signed.read_bytes(), "contacts.csv.pgp"))
    assert (record["status"], record["created"]) == ("imported", 50), record.get("reason")
    # When a file is not signed, or the worker has another DROPIMPORT_SECRET_KEY
    record = importer.run(spool(home, "acme", unsigned.read_bytes(), "contacts.csv.pgp"))
    assert record["status"] == "rejected" and "signature missing" in record["reason"]
    importer.secret_key = credentials.new_key()
    again = pgp_customer.encrypt(plain, tmp_path / "again.pgp", "--sign")  # not identical
    record = importer.run(spool(home, "acme", again.read_bytes(), "contacts.csv.gpg"))
    assert record["status"] == "rejected"
    assert "the account's OpenPGP key cannot be used" in record["reason"]
