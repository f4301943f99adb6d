"""Public keys as operators paste them: real keys made by ssh-keygen, fingerprints as it prints."""

import base64
import itertools
import struct
import subprocess

import asyncssh
import pytest

from dropimport.sshkeys import KeyRefused, PublicKey, parse


@pytest.fixture
def keygen(tmp_path):
    """Make a key pair with ssh-keygen; return the path of its private key (the .pub beside)."""
    names = (f"key{number}" for number in itertools.count())

    def make(*options, comment="jo@laptop"):
        path = tmp_path / next(names)
        subprocess.run(["ssh-keygen", "-q", *options, "-N", "", "-C", comment, "-f", str(path)],
                       check=True, capture_output=True)
        return path
    return make


def fingerprint(pub_path):
    """The fingerprint `ssh-keygen -lf` prints for a .pub file."""
    listed = subprocess.run(["ssh-keygen", "-lf", str(pub_path)], check=True,
                            capture_output=True, text=True).stdout
    return listed.split()[1]


def security_key(line):
    """The FIDO (`sk-`) key made of the same point as an ed25519 or nistp256 key `line`, as a
    security key's .pub holds it (no such key can be generated without the hardware)."""
    kind, data, *_ = line.split()
    blob = base64.b64decode(data)
    fields = []
    while blob:
        (size,), blob = struct.unpack(">I", blob[:4]), blob[4:]
        fields.append(blob[:size])
        blob = blob[size:]
    sk_kind = {"ssh-ed25519": "sk-ssh-ed25519@openssh.com",
               "ecdsa-sha2-nistp256": "sk-ecdsa-sha2-nistp256@openssh.com"}[kind]
    fields = [sk_kind.encode(), *fields[1:], b"ssh:"]
    packed = b"".join(struct.pack(">I", len(field)) + field for field in fields)
    return f"{sk_kind} {base64.b64encode(packed).decode()} yubikey"


@pytest.mark.parametrize("options", [
    ["-t", "ed25519"],
    ["-t", "ecdsa", "-b", "256"],
    ["-t", "ecdsa", "-b", "384"],
    ["-t", "ecdsa", "-b", "521"],
    ["-t", "rsa", "-b", "2048"],
    ["-t", "rsa", "-b", "3072"],
], ids=lambda options: "-".join(options[1::2]))
def test_a_key_is_kept_canonical_with_the_fingerprint_ssh_keygen_prints(keygen, options):
    # Given a .pub file as ssh-keygen writes it, with a comment of several words
    path = keygen(*options, comment="Jo Doe's laptop, café")
    pub = path.with_suffix(".pub")
    kind, data, _ = pub.read_text().split(maxsplit=2)
    # When it is parsed
    key = parse(pub.read_text())
    # Then the key is its type and base64 alone, the fingerprint as ssh-keygen prints it, and
    # the comment whole (asyncssh alone refuses one that is not ASCII)
    assert key == PublicKey(f"{kind} {data}", fingerprint(pub), "Jo Doe's laptop, café")


def test_surrounding_blanks_and_a_missing_comment_are_tolerated(keygen):
    pub = keygen("-t", "ed25519").with_suffix(".pub")
    kind, data, _ = pub.read_text().split()
    expected = PublicKey(f"{kind} {data}", fingerprint(pub), "")
    assert parse(f"  {kind} {data}\n") == expected
    assert parse(f"\r\n{kind}\t{data}  \r\n") == expected


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_security_keys_are_accepted(keygen, tmp_path, kind):
    # Given the .pub of a FIDO security key (sk-ssh-ed25519 or sk-ecdsa-sha2-nistp256)
    line = security_key(keygen("-t", kind, "-b", "256").with_suffix(".pub").read_text())
    (tmp_path / "sk.pub").write_text(line + "\n")
    # Then it is kept, with the fingerprint ssh-keygen prints for it
    key = parse(line)
    assert key.key == line.rsplit(" ", 1)[0] and key.key.startswith("sk-")
    assert (key.fingerprint, key.comment) == (fingerprint(tmp_path / "sk.pub"), "yubikey")


def refused(text):
    with pytest.raises(KeyRefused) as raised:
        parse(text)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_weak_and_obsolete_keys_are_refused_saying_why(keygen):
    weak = keygen("-t", "rsa", "-b", "1024").with_suffix(".pub").read_text()
    assert refused(weak) == "an RSA key of 1024 bits is too weak: at least 2048"
    # asyncssh makes the DSA key: OpenSSH 10 no longer can
    dsa = asyncssh.generate_private_key("ssh-dss").export_public_key().decode()
    assert refused(dsa) == "ssh-dss keys are no longer considered secure; use ed25519"


def test_what_is_not_one_public_key_is_refused_saying_why(keygen):
    # Given a key pair, and a certificate of its public key signed by a CA
    private = keygen("-t", "ed25519")
    line = private.with_suffix(".pub").read_text()
    kind, data, _ = line.split()
    subprocess.run(["ssh-keygen", "-q", "-s", str(keygen("-t", "ed25519")), "-I", "jo",
                    str(private.with_suffix(".pub"))], check=True, capture_output=True)
    certificate = private.parent / f"{private.name}-cert.pub"
    rfc4716 = subprocess.run(["ssh-keygen", "-e", "-f", str(private.with_suffix(".pub"))],
                             check=True, capture_output=True, text=True).stdout
    # Then every wrong thing is refused in one line that says what to give instead
    assert refused("") == refused(" \n") == "no public key: the text is empty"
    assert refused(private.read_text()) == "this is a private key: give the .pub file"
    assert refused(line + line) == "2 lines: give one public key, on one line"
    assert refused(f'no-pty,from="10.0.0.1" {line}') == (
        "options before the key type are not accepted: give the key alone")
    assert refused(certificate.read_text()) == (
        "this is an SSH certificate: give the plain public key (the .pub file)")
    assert refused(rfc4716).startswith("this is an RFC 4716 (PuTTY) public key: convert it")
    assert refused("hello world") == "not an OpenSSH public key: unknown key type 'hello'"
    assert refused(kind) == "not an OpenSSH public key: nothing after ssh-ed25519"
    # And so is a key cut short, or whose base64 is of another type than it says
    assert refused(f"{kind} {data[:-10]}") == (
        "not an OpenSSH public key: its base64 is not a whole ssh-ed25519 key "
        "(cut short or altered)")
    assert refused(f"ssh-rsa {data}").startswith(
        "not an OpenSSH public key: its base64 is not a whole ssh-rsa key")
