"""Upload over SFTP -> RabbitMQ -> worker -> contacts store, with real processes and OpenSSH."""

import subprocess

import pytest

from tests.conftest import DEMO

HEADER = "E-mail;Prénom;Nom;Ville\r\n"


@pytest.fixture
def acme(system, tmp_path):
    """acme, with the demo template and an ed25519 key added with the command line; the key."""
    system.cli("account", "create", "acme", "--ftp-user", "acme-ftp", "--password-stdin",
               input="acme-secret\n")
    system.cli("template", "set", "acme", str(DEMO / "template.json"))
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    added = system.cli("account", "add-key", "acme", "--key-file", f"{key}.pub").stdout
    assert added.startswith("key SHA256:")
    return key


def sftp(system, key, known_hosts, commands, cwd, strict="accept-new"):
    return subprocess.run(
        ["sftp", "-b", "-", "-P", str(system.sftp_port), "-o", "BatchMode=yes",
         "-o", "IdentitiesOnly=yes", "-i", str(key), "-o", f"StrictHostKeyChecking={strict}",
         "-o", f"UserKnownHostsFile={known_hosts}", "acme-ftp@127.0.0.1"],
        input=commands, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_a_2_mb_file_put_over_sftp_is_imported(system, acme, tmp_path):
    # Given a 2 MB file of distinct contacts
    rows = 60_000
    (tmp_path / "contacts.csv").write_text(
        HEADER + "".join(f"contact.{n}@example.com;Jo;Doe;Nice\r\n" for n in range(rows)),
        encoding="utf-8")
    assert (tmp_path / "contacts.csv").stat().st_size > 2_000_000
    known_hosts = tmp_path / "known_hosts"
    # When the customer puts it with OpenSSH's sftp and its key
    result = sftp(system, acme, known_hosts, "put contacts.csv\n", tmp_path)
    assert result.returncode == 0, result.stderr
    # Then it is imported whole, as an FTP upload is
    [record] = system.wait_for_imports(1, timeout=120)
    assert (record["status"], record["rows"], record["created"]) == ("imported", rows, rows)
    assert len(system.contacts("acme")) == rows
    # And its report is there to download over SFTP
    result = sftp(system, acme, known_hosts, f"get reports/contacts.csv.{record['id']}.json\n",
                  tmp_path, strict="yes")
    assert result.returncode == 0, result.stderr
    assert f'"{record["id"]}"' in (tmp_path / f"contacts.csv.{record['id']}.json").read_text()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the store plays no part
def test_the_host_key_survives_a_restart(system, acme, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    assert sftp(system, acme, known_hosts, "ls\n", tmp_path).returncode == 0
    # When the agent restarts, a client that knows the host refuses any other key: it connects
    assert system.stop() == [0]
    system.processes.clear()
    system.start()
    result = sftp(system, acme, known_hosts, "ls\n", tmp_path, strict="yes")
    assert result.returncode == 0, result.stderr
    assert "reports" in result.stdout
