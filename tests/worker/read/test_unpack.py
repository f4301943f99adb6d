"""Unpacking uploads as they are read: files made by the customers' own tools (gzip, Info-ZIP's
zip, Python's zipfile, GnuPG, Sequoia), and the files that must be refused, each with its
reason."""

import gzip
import os
import subprocess
import zipfile

import pytest

from dropimport.packaging import packing
from tests.openpgp import sequoia_encrypt, signer
from worker.read.unpack import Unreadable, unpacked, unpacking

CSV = b"".join([b"email;name\r\n", *(b"c%d@example.com;Name %d\r\n" % (i, i)
                                     for i in range(3000))])
LIMITS = {"max_file_size": 1 << 30, "max_ratio": 100}


def read(path, name=None, account=None, secret_key=None):
    """The bytes unpacked from `path`, uploaded as `name` (default its own)."""
    how = unpacking(packing(name or path.name), {**LIMITS, **(account or {})}, secret_key)
    with unpacked(path, how) as stream:
        return stream.read()


@pytest.fixture
def plain(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_bytes(CSV)
    return path


def run(*command, cwd):
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=60)


def test_gzip_made_by_the_gzip_command_is_read_whole(plain):
    run("gzip", "-k", plain.name, cwd=plain.parent)
    assert read(plain.parent / "contacts.csv.gz") == CSV


def test_a_gzip_of_several_members_is_read_whole(tmp_path):
    # `cat a.gz b.gz` is a valid gzip file: both parts are the file
    path = tmp_path / "contacts.csv.gz"
    path.write_bytes(gzip.compress(CSV[:1000]) + gzip.compress(CSV[1000:]))
    assert read(path) == CSV


@pytest.mark.parametrize("tool", ["info-zip", "zipfile"])
def test_zip_of_one_member_is_read_whatever_the_members_name(plain, tool):
    target = plain.parent / "contacts.csv.zip"
    if tool == "info-zip":
        run("zip", "-q", "contacts.csv.zip", "contacts.csv", cwd=plain.parent)
    else:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("export/Contacts 2026-12-07.csv", CSV)
    assert read(target) == CSV


def test_among_several_members_the_one_named_as_the_file_is_read(tmp_path):
    target = tmp_path / "contacts.csv.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("readme.txt", b"exported by our CRM")
        archive.writestr("export/", b"")  # a folder is not a member to import
        archive.writestr("export/contacts.csv", CSV)
    assert read(target) == CSV


@pytest.mark.parametrize("members", [["a.csv", "b.csv"], ["x/contacts.csv", "y/contacts.csv"],
                                     []])
def test_other_member_lists_are_refused_naming_the_members(tmp_path, members):
    target = tmp_path / "contacts.csv.zip"
    with zipfile.ZipFile(target, "w") as archive:
        for name in members:
            archive.writestr(name, CSV)
    with pytest.raises(Unreadable) as refused:
        read(target)
    assert f"it holds {len(members)}" in str(refused.value)
    assert all(repr(name) in str(refused.value) for name in members)


@pytest.mark.parametrize("name", ["../../etc/contacts.csv", "/etc/contacts.csv",
                                  "..\\..\\contacts.csv", "C:/contacts.csv"])
def test_a_zip_slip_name_is_refused_and_nothing_is_written(tmp_path, name):
    target = tmp_path / "contacts.csv.zip"
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr(name, CSV)
    before = set(tmp_path.parent.rglob("*"))
    with pytest.raises(Unreadable, match="unsafe name"):
        read(target)
    assert set(tmp_path.parent.rglob("*")) == before


def test_an_encrypted_zip_is_refused(plain):
    run("zip", "-q", "-P", "s3cret", "contacts.csv.zip", "contacts.csv", cwd=plain.parent)
    with pytest.raises(Unreadable, match=r"is encrypted .*OpenPGP instead"):
        read(plain.parent / "contacts.csv.zip")


def test_a_multi_disk_zip_is_refused(tmp_path):
    (tmp_path / "contacts.csv").write_bytes(os.urandom(200_000))
    run("zip", "-q", "-s", "64k", "contacts.csv.zip", "contacts.csv", cwd=tmp_path)
    with pytest.raises(Unreadable, match=r"split .multi-disk. archive"):
        read(tmp_path / "contacts.csv.zip")


def test_a_zip_member_whose_crc_fails_is_refused(tmp_path):
    target = tmp_path / "contacts.csv.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("contacts.csv", CSV)
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF  # a byte of the member's data
    target.write_bytes(bytes(data))
    with pytest.raises(Unreadable, match=r"zip member cannot be read .*CRC"):
        read(target)


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_a_truncated_gzip_is_refused_as_incomplete(plain, cut):
    run("gzip", plain.name, cwd=plain.parent)
    path = plain.parent / "contacts.csv.gz"
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(Unreadable, match=r"cut before its end.*incomplete"):
        read(path)


def test_a_file_that_is_not_gzip_is_refused(plain):
    path = plain.rename(plain.parent / "contacts.csv.gz")
    with pytest.raises(Unreadable, match="not a valid gzip file"):
        read(path)


@pytest.mark.parametrize("kind", ["gzip", "zip"])
def test_a_bomb_is_refused_after_at_most_the_limits_work(tmp_path, kind):
    # 200 MB of zeros compress to about 200 kB: a thousand to one
    path = tmp_path / f"contacts.csv.{'gz' if kind == 'gzip' else 'zip'}"
    zeros = b"\0" * (1 << 20)
    if kind == "gzip":
        with gzip.open(path, "wb") as out:
            for _ in range(200):
                out.write(zeros)
    else:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, \
                archive.open("contacts.csv", "w") as out:
            for _ in range(200):
                out.write(zeros)
    how = unpacking(packing(path.name), LIMITS, None)
    with unpacked(path, how) as stream, pytest.raises(Unreadable) as refused:
        while stream.read(1 << 16):
            pass
    assert "max_ratio 100:1" in str(refused.value) and "bomb" in str(refused.value)
    # no more than the limit was decompressed (and one block past it)
    assert stream.count <= 100 * path.stat().st_size + (1 << 16)


def test_max_file_size_bounds_what_comes_out(plain):
    run("gzip", plain.name, cwd=plain.parent)
    with pytest.raises(Unreadable, match=r"past 50,000 bytes .*max_file_size 50,000"):
        read(plain.parent / "contacts.csv.gz", account={"max_file_size": 50_000})


# OpenPGP: GnuPG and Sequoia messages to the account's key

def test_gpg_messages_decrypt_binary_armoured_and_compressed_inside(plain, pgp_customer,
                                                                    account_key):
    folder = plain.parent
    binary = pgp_customer.encrypt(plain, folder / "contacts.csv.pgp")
    armoured = pgp_customer.encrypt(plain, folder / "contacts.csv.asc", "--armor")
    run("gzip", "-k", plain.name, cwd=folder)
    run("zip", "-q", "contacts.csv.zip", "contacts.csv", cwd=folder)
    inside_gzip = pgp_customer.encrypt(folder / "contacts.csv.gz", folder / "contacts.csv.gz.gpg")
    inside_zip = pgp_customer.encrypt(folder / "contacts.csv.zip", folder / "contacts.csv.zip.pgp")
    for path in (binary, armoured, inside_gzip, inside_zip):
        assert read(path, secret_key=account_key.secret_key) == CSV, path.name


def test_a_sequoia_message_decrypts(plain, account_key):
    message = sequoia_encrypt(plain, plain.parent / "contacts.csv.pgp", account_key.public_key)
    assert read(message, secret_key=account_key.secret_key) == CSV


def test_a_signed_file_is_read_when_its_signer_is_required(plain, pgp_customer, account_key):
    message = pgp_customer.encrypt(plain, plain.parent / "contacts.csv.pgp", "--sign")
    account = {"openpgp": {"signer": signer(pgp_customer)}}
    assert read(message, account=account, secret_key=account_key.secret_key) == CSV


@pytest.mark.parametrize("options, reason", [
    ((), "signature missing: files must be signed by key 0x{signer}"),
    (("--sign",), "signed by unknown key 0x[0-9A-F]{{16}}, not by the signer 0x{signer}"),
])
def test_a_file_not_signed_by_the_signer_is_refused(plain, pgp_customer, pgp_stranger,
                                                      account_key, options, reason):
    # the stranger's keyring holds the account's public key too: anybody may encrypt
    message = pgp_stranger.encrypt(plain, plain.parent / "contacts.csv.pgp", *options)
    account = {"openpgp": {"signer": signer(pgp_customer)}}
    with pytest.raises(Unreadable, match=reason.format(signer=pgp_customer.fingerprint)):
        read(message, account=account, secret_key=account_key.secret_key)


def test_a_message_to_another_key_is_refused(plain, pgp_customer, account_key):
    # encrypted by the customer, by mistake, to a key of its own
    pgp_customer.gpg("--passphrase", "", "--pinentry-mode", "loopback", "--quick-generate-key",
                     "other <other@customer.example>", "futuredefault", "default", "never")
    message = plain.parent / "contacts.csv.gpg"
    pgp_customer.gpg("--encrypt", "--recipient", "other@customer.example", "--output",
                     str(message), str(plain))
    with pytest.raises(Unreadable, match="not encrypted to this account's OpenPGP key "
                                         r"\(encrypted to 0x[0-9A-F]{16}\)"):
        read(message, secret_key=account_key.secret_key)


def test_a_cut_or_clear_message_is_refused(plain, pgp_customer, account_key):
    message = pgp_customer.encrypt(plain, plain.parent / "contacts.csv.pgp")
    data = message.read_bytes()
    message.write_bytes(data[:len(data) // 2])
    with pytest.raises(Unreadable, match=r"cannot be decrypted to its end .*complete"):
        read(message, secret_key=account_key.secret_key)
    clear = plain.parent / "clear.csv.pgp"
    clear.write_bytes(CSV)
    with pytest.raises(Unreadable, match="not an OpenPGP-encrypted message"):
        read(clear, secret_key=account_key.secret_key)


def test_an_encrypted_file_without_an_account_key_is_refused(plain, pgp_customer):
    message = pgp_customer.encrypt(plain, plain.parent / "contacts.csv.pgp")
    with pytest.raises(Unreadable, match="this account has no OpenPGP key"):
        read(message)
