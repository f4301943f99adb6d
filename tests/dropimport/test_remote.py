"""Uploads to the customers' own servers, against real ones: pyftpdlib (plain and explicit FTPS)
and asyncssh (SFTP), each serving a folder of the test's in a thread."""

import os
import re
import socket

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from dropimport.accounts import source_with_defaults
from dropimport.remote import CHUNK, RemoteError, connect
from tests.servers import PASSWORD, USER, CustomerFtp, CustomerSftp, put

#: Over two SFTP chunks, with every byte value (CR and LF would betray an ASCII-mode transfer).
DATA = bytes(range(256)) * (2 * CHUNK // 256) + os.urandom(1000)


class Customer:
    """A customer's server serving `root`, and the source that points at it."""

    def __init__(self, protocol, root, server, fingerprint):
        self.root, self.server = root, server
        self.source = source_with_defaults({
            "protocol": protocol, "host": server.host, "port": server.port, "user": USER,
            "directory": "/", "timeout": 10, "fingerprint": fingerprint,
        })

    def connect(self):
        return connect(self.source, PASSWORD)


def start(protocol, root, certificate):
    if protocol == "sftp":
        server = CustomerSftp(root)
        return server, server.fingerprint
    if protocol == "ftps":
        cert = x509.load_pem_x509_certificate(certificate[0].read_bytes())
        return CustomerFtp(root, certificate), cert.fingerprint(hashes.SHA256()).hex()
    return CustomerFtp(root), None


@pytest.fixture(params=["ftp", "ftps", "sftp"])
def customer(request, tmp_path, certificate):
    root = tmp_path / "customer"
    root.mkdir()
    server, fingerprint = start(request.param, root, certificate)
    yield Customer(request.param, root, server, fingerprint)
    server.stop()


@pytest.fixture
def local(tmp_path):
    """Write a local file to upload."""
    def write(data, name="export.csv"):
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return write


def files(root):
    return sorted(path.name for path in root.iterdir())


def watch_writes(monkeypatch, remote, root, name):
    """Record (name written, what the customer then sees under `name`) for each file written."""
    seen = []
    write = remote._write

    def recording(path, written):
        write(path, written)
        target = root / name
        seen.append((written, target.read_bytes() if target.exists() else None))

    monkeypatch.setattr(remote, "_write", recording)
    return seen


def test_upload_arrives_whole(customer, local):
    # When a file is uploaded
    with customer.connect() as remote:
        remote.upload(local(DATA), "contacts.csv")

    # Then it is on the server, byte for byte, and no .part is left
    assert files(customer.root) == ["contacts.csv"]
    assert (customer.root / "contacts.csv").read_bytes() == DATA


def test_upload_replaces_a_file_never_seen_partial(customer, local, monkeypatch):
    # Given last night's export on the server
    put(customer.root, "contacts.csv", b"old export\r\n")

    # When tonight's is uploaded
    with customer.connect() as remote:
        writes = watch_writes(monkeypatch, remote, customer.root, "contacts.csv")
        remote.upload(local(DATA), "contacts.csv")

    # Then it was written under a temporary name, the old file still whole meanwhile
    assert writes == [("contacts.csv.part", b"old export\r\n")]
    # And the new file replaced the old one
    assert files(customer.root) == ["contacts.csv"]
    assert (customer.root / "contacts.csv").read_bytes() == DATA


def test_an_empty_marker_uploads(customer, local):
    # Given a contacts.csv, and its completion marker: an empty file
    with customer.connect() as remote:
        remote.upload(local(DATA), "contacts.csv")
        remote.upload(local(b"", "done"), "contacts.csv.done")

    # Then both are there, the marker empty
    assert files(customer.root) == ["contacts.csv", "contacts.csv.done"]
    assert (customer.root / "contacts.csv.done").read_bytes() == b""


@pytest.mark.parametrize(("server", "existing", "written"), [
    # No rename at all (RNFR refused): the file is written again under its own name
    ({"perm": "elradmwMT"}, None, ["contacts.csv.part", "contacts.csv"]),
    ({"perm": "elradmwMT"}, b"old export\r\n", ["contacts.csv.part", "contacts.csv"]),
    # No rename over an existing file (IIS): the old file is deleted, then the rename done
    ({"rename_over": False}, b"old export\r\n", ["contacts.csv.part"]),
])
def test_an_ftp_server_refusing_renames_still_gets_the_file(tmp_path, local, monkeypatch,
                                                            server, existing, written):
    # Given an FTP server that refuses some renames, with or without last night's export
    root = tmp_path / "customer"
    root.mkdir()
    if existing:
        put(root, "contacts.csv", existing)
    ftp = CustomerFtp(root, **server)
    try:
        # When a file is uploaded
        with Customer("ftp", root, ftp, None).connect() as remote:
            writes = watch_writes(monkeypatch, remote, root, "contacts.csv")
            remote.upload(local(DATA), "contacts.csv")
    finally:
        ftp.stop()

    # Then it was written as far as the server allows renames
    assert [name for name, _ in writes] == written
    # And it is there whole, with no .part left
    assert files(root) == ["contacts.csv"]
    assert (root / "contacts.csv").read_bytes() == DATA


@pytest.mark.parametrize("protocol", ["ftp", "ftps", "sftp"])
def test_a_server_that_is_down_is_a_remote_error(protocol):
    # Given a port nobody listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = source_with_defaults({"protocol": protocol, "host": "127.0.0.1", "port": port,
                                   "user": USER, "directory": "/", "timeout": 5})

    # When a remote is opened there, the error names the server, never the password
    with pytest.raises(RemoteError, match=re.escape(f"@127.0.0.1:{port}")) as error:
        connect(source, PASSWORD)
    assert PASSWORD not in str(error.value)


def test_an_upload_the_server_refuses_is_a_remote_error(customer, local):
    # When a file is uploaded into a folder the server does not have
    with customer.connect() as remote, pytest.raises(RemoteError) as error:
        remote.upload(local(DATA), "missing/contacts.csv")

    # Then the error names the server, never the password, and nothing arrived
    assert f"@127.0.0.1:{customer.server.port}" in str(error.value)
    assert PASSWORD not in str(error.value)
    assert files(customer.root) == []
