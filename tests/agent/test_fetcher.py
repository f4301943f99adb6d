"""The fetcher against real customer servers: pyftpdlib (plain and explicit FTPS) and asyncssh
(SFTP), driven by a clock of the test's own: no test waits for a schedule."""

import json
import logging
import os
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from agent import incoming, staging
from agent.fetcher import Fetcher
from dropimport import credentials, remote
from tests.servers import PASSWORD, USER, CustomerFtp, CustomerSftp, put

KEY = credentials.new_key()
DATA = (b"E-mail;Pr\xc3\xa9nom;Nom\r\n" + b"".join(
    f"user{i}@example.com;Jo{i};Doe\r\n".encode() for i in range(400)))
SIX = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


class FakeClock:
    """The fetcher's clock: time moves only when the fetcher waits; `on_wait` runs then."""

    def __init__(self, now):
        self.moment = now
        self.on_wait = []

    def now(self):
        return self.moment

    def wait(self, event, seconds):
        self.moment += timedelta(seconds=seconds)
        for hook in self.on_wait:
            hook()
        return event.is_set()


class Customer:
    """A customer's server serving `root`, and the sources of account acme that point at it."""

    def __init__(self, protocol, root, server, registry, certificate):
        self.protocol, self.root, self.server = protocol, root, server
        self.registry, self.certificate = registry, certificate

    def add_source(self, name="nightly", **settings):
        source = {
            "protocol": self.protocol, "host": self.server.host, "port": self.server.port,
            "user": USER, "secret": credentials.encrypt(PASSWORD, KEY), "directory": "/",
            "file": "contacts.csv", "schedule": "0 6 * * *", "timeout": 10,
        }
        if self.protocol == "ftps":
            source["ca_file"] = str(self.certificate[0])
        if self.protocol == "sftp":
            source["fingerprint"] = self.server.fingerprint
        source.update(settings)
        source = {key: value for key, value in source.items() if value is not None}
        return self.registry.set_source("acme", name, source)


def start_server(protocol, root, certificate):
    if protocol == "sftp":
        return CustomerSftp(root)
    return CustomerFtp(root, certificate if protocol == "ftps" else None)


@pytest.fixture(params=["ftp", "ftps", "sftp"])
def customer(request, tmp_path, accounts, certificate):
    root = tmp_path / "customer"
    root.mkdir()
    server = start_server(request.param, root, certificate)
    yield Customer(request.param, root, server, accounts, certificate)
    server.stop()


@pytest.fixture
def ftp_customer(tmp_path, accounts, certificate):
    root = tmp_path / "customer"
    root.mkdir()
    server = CustomerFtp(root)
    yield Customer("ftp", root, server, accounts, certificate)
    server.stop()


@pytest.fixture
def clock():
    return FakeClock(SIX)


@pytest.fixture
def fetcher(home, clock):
    return Fetcher(home, KEY, clock=clock)


def arrivals(home):
    """(arrival, content) of each file handed over to the watcher, in order."""
    if not home.incoming.exists():
        return []
    return [(incoming.parse(path.name), path.read_bytes())
            for path in sorted(home.incoming.iterdir())]


def test_a_new_file_is_fetched_and_handed_over_like_an_upload(customer, fetcher, home):
    # Given the customer's contacts.csv and another file on its server
    put(customer.root, "contacts.csv", DATA)
    put(customer.root, "readme.txt", b"not for us")
    customer.add_source()

    # When the source is fetched
    run = fetcher.fetch("acme", "nightly")

    # Then contacts.csv, whole, waits in incoming/ for the watcher, as an upload would
    [(arrival, content)] = arrivals(home)
    assert (arrival.account, arrival.file) == ("acme", "contacts.csv")
    assert content == DATA
    assert run.fetched == [("contacts.csv", arrival.import_id)]
    assert staging.uploads(home) == []
    # and what was fetched is remembered across restarts
    state = Fetcher(home, KEY).state("acme", "nightly")
    assert state["files"]["contacts.csv"]["size"] == len(DATA)
    assert state["failures"] == 0


def test_an_unchanged_file_is_not_fetched_again(customer, fetcher, home):
    path = put(customer.root, "contacts.csv", DATA)
    customer.add_source()
    fetcher.fetch("acme", "nightly")

    # When nothing changed, nothing is downloaded nor handed over
    run = fetcher.fetch("acme", "nightly")
    assert run == ([], [], [])
    assert len(arrivals(home)) == 1
    assert [new for _, new in fetcher.test("acme", "nightly")] == [False]

    # A new time with the same content is downloaded, compared, and not imported again
    later = datetime.now(UTC)
    os.utime(path, (later.timestamp(), later.timestamp()))
    assert fetcher.fetch("acme", "nightly").unchanged == ["contacts.csv"]
    assert len(arrivals(home)) == 1

    # New content is
    put(customer.root, "contacts.csv", DATA + b"new@example.com;New;One\r\n")
    assert len(fetcher.fetch("acme", "nightly").fetched) == 1
    assert arrivals(home)[-1][1].endswith(b"new@example.com;New;One\r\n")


def test_a_file_still_growing_is_fetched_only_once_stable(customer, fetcher, clock, home):
    # Given a file the customer's system is still writing: it grows while the fetcher waits
    path = put(customer.root, "contacts.csv", DATA[:1000])
    customer.add_source(stable_seconds=5)

    def grow():
        with open(path, "ab") as file:
            file.write(DATA[1000:2000])

    clock.on_wait.append(grow)
    run = fetcher.fetch("acme", "nightly")
    assert run.growing == ["contacts.csv"]
    assert arrivals(home) == []

    # When it stopped growing, it is fetched whole
    clock.on_wait.clear()
    put(customer.root, "contacts.csv", DATA)
    assert len(fetcher.fetch("acme", "nightly").fetched) == 1
    assert arrivals(home)[0][1] == DATA


@pytest.mark.parametrize("protocol", ["ftp", "sftp"])
def test_a_dropped_connection_resumes_and_never_hands_over_a_truncated_file(
        protocol, tmp_path, accounts, certificate, home, clock, caplog):
    root = tmp_path / "customer"
    root.mkdir()
    server = start_server(protocol, root, certificate)
    try:
        Customer(protocol, root, server, accounts, certificate).add_source()
        fetcher = Fetcher(home, KEY, clock=clock)

        # Given a big file whose download is cut three times, part-way
        big = DATA * 100
        put(root, "contacts.csv", big)
        server.drop(times=3, after=600_000)
        fetcher.fetch("acme", "nightly")

        # Then each attempt resumed where the last one stopped, and the file is whole: started
        # again from the first byte, none of the three attempts would have completed
        [(_, content)] = arrivals(home)
        assert content == big
        assert server.connections == 3
        assert "resumes at byte" in caplog.text

        # Given a download cut at every attempt: it fails, and nothing is handed over
        put(root, "contacts.csv", big + b"x@example.com;X;Y\r\n")
        server.drop(times=10, after=100_000)
        with pytest.raises(remote.RemoteError, match="download incomplete"):
            fetcher.fetch("acme", "nightly")
        assert len(arrivals(home)) == 1
        assert staging.uploads(home) == []
        assert fetcher.state("acme", "nightly")["failures"] == 1
    finally:
        server.stop()


@pytest.mark.parametrize("protocol", ["ftp", "ftps", "sftp"])
def test_wrong_credentials_alert_at_once_and_wait_for_the_next_schedule(
        protocol, tmp_path, accounts, certificate, home, clock, caplog):
    root = tmp_path / "customer"
    root.mkdir()
    server = start_server(protocol, root, certificate)
    try:
        put(root, "contacts.csv", DATA)
        Customer(protocol, root, server, accounts, certificate).add_source(
            secret=credentials.encrypt("wrong-password", KEY))
        fetcher = Fetcher(home, KEY, clock=clock)
        clock.moment = SIX - timedelta(minutes=1)
        fetcher.run_due()

        # When the scheduled run comes, the login is refused
        clock.moment = SIX
        with caplog.at_level(logging.WARNING):
            fetcher.run_due()

        # Then a clear error and an alert at once, no password in them
        state = fetcher.state("acme", "nightly")
        assert "login refused" in state["last_error"]
        assert "check the user and password" in state["last_error"]
        assert "ALERT source nightly of account acme" in caplog.text
        assert "wrong-password" not in caplog.text + state["last_error"]
        # and no retry before the next scheduled run: no lockout for the customer
        deadline = time.monotonic() + 10
        while server.failed_logins < 1:  # pyftpdlib counts a refused login after its 530
            assert time.monotonic() < deadline, "the server never counted the refused login"
            time.sleep(0.05)
        logins = server.failed_logins
        for minutes in (1, 5, 30, 120):
            clock.moment = SIX + timedelta(minutes=minutes)
            fetcher.run_due()
        assert server.failed_logins == logins
        assert arrivals(home) == []
    finally:
        server.stop()


def test_the_remote_file_is_removed_after_download_when_configured(customer, fetcher, home):
    put(customer.root, "contacts.csv", DATA)
    customer.add_source(after_download="delete")
    fetcher.fetch("acme", "nightly")
    assert len(arrivals(home)) == 1
    assert not (customer.root / "contacts.csv").exists()


def test_the_remote_file_is_moved_after_download_when_configured(ftp_customer, fetcher, home):
    (ftp_customer.root / "done").mkdir()
    put(ftp_customer.root, "contacts.csv", DATA)
    ftp_customer.add_source(after_download="move", move_to="/done")
    fetcher.fetch("acme", "nightly")
    assert len(arrivals(home)) == 1
    assert (ftp_customer.root / "done" / "contacts.csv").read_bytes() == DATA
    assert not (ftp_customer.root / "contacts.csv").exists()


def test_a_glob_fetches_each_matching_file_under_its_name(ftp_customer, fetcher, home, registry,
                                                         demo_template):
    registry.set_template("acme", {**demo_template, "file": "export-*.csv"})
    put(ftp_customer.root, "export-1.csv", DATA)
    put(ftp_customer.root, "export-2.csv", DATA + b"a@b.co;A;B\r\n")
    put(ftp_customer.root, "other.csv", DATA)
    ftp_customer.add_source(file="export-*.csv")
    fetcher.fetch("acme", "nightly")
    names = [arrival.file for arrival, _ in arrivals(home)]
    assert names == ["export-1.csv", "export-2.csv"]
    # the worker finds their template, as for an upload
    assert all(registry.template("acme", name)["file"] == "export-*.csv" for name in names)


def test_the_schedule_runs_at_its_time_only(ftp_customer, fetcher, clock, home):
    put(ftp_customer.root, "contacts.csv", DATA)
    ftp_customer.add_source(schedule="0 6 * * *")
    for moment in (SIX - timedelta(hours=1), SIX - timedelta(seconds=1)):
        clock.moment = moment
        assert fetcher.run_due() <= SIX
    assert arrivals(home) == [] and ftp_customer.server.connections == 0

    clock.moment = SIX
    fetcher.run_due()
    assert len(arrivals(home)) == 1

    # Nothing more until the next day at 06:00, even for a changed file
    put(ftp_customer.root, "contacts.csv", DATA + b"c@d.co;C;D\r\n")
    for hours in (1, 12, 23):
        clock.moment = SIX + timedelta(hours=hours)
        fetcher.run_due()
    assert ftp_customer.server.connections == 1
    clock.moment = SIX + timedelta(days=1)
    fetcher.run_due()
    assert len(arrivals(home)) == 2


def test_a_run_missed_while_the_agent_was_down_runs_at_start(ftp_customer, home, clock):
    put(ftp_customer.root, "contacts.csv", DATA)
    ftp_customer.add_source()
    Fetcher(home, KEY, clock=clock).fetch("acme", "nightly")  # yesterday's
    state = Fetcher(home, KEY).state("acme", "nightly")
    state["last_run"] = (SIX - timedelta(days=1)).isoformat()
    home.pull_state("acme", "nightly").write_text(json.dumps(state))
    put(ftp_customer.root, "contacts.csv", DATA + b"b@c.co;B;C\r\n")

    # The agent starts at 07:00: today's 06:00 run was missed, so it runs now
    clock.moment = SIX + timedelta(hours=1)
    Fetcher(home, KEY, clock=clock).run_due()
    assert len(arrivals(home)) == 2


def test_a_server_down_is_retried_with_backoff_and_alerts_after_n_failures(
        ftp_customer, fetcher, clock, caplog):
    # Given a server that is down from the scheduled time on
    ftp_customer.add_source(alert_after=3)
    ftp_customer.server.stop()
    clock.moment = SIX - timedelta(seconds=1)
    fetcher.run_due()

    # When the fetcher is called every 10 s for 10 minutes
    attempts, alerts = [], []
    with caplog.at_level(logging.WARNING):
        for step in range(60):
            clock.moment = SIX + timedelta(seconds=10 * step)
            fetcher.run_due()
            failures = fetcher.state("acme", "nightly")["failures"]
            if failures > len(attempts):
                attempts.append(10 * step)
                alerts.append(caplog.text.count("ALERT"))

    # Then it tried again after 30 s, doubling, and alerted once, at the third failure
    assert attempts == [0, 30, 90, 210, 450]
    assert alerts == [0, 0, 1, 1, 1]
    assert "no answer" in fetcher.state("acme", "nightly")["last_error"] or \
        "Connection refused" in fetcher.state("acme", "nightly")["last_error"]


def test_ftps_checks_the_server_certificate(tmp_path, accounts, certificate, home, clock):
    root = tmp_path / "customer"
    root.mkdir()
    server = CustomerFtp(root, certificate)
    try:
        put(root, "contacts.csv", DATA)
        customer = Customer("ftps", root, server, accounts, certificate)
        fetcher = Fetcher(home, KEY, clock=clock)

        # A self-signed certificate is not trusted by default: no password is sent
        customer.add_source("system-ca", ca_file=None)
        with pytest.raises(remote.Untrusted, match="certificate not trusted"):
            fetcher.fetch("acme", "system-ca")
        assert server.failed_logins == 0

        # A wrong pinned fingerprint is refused; the right one is trusted
        customer.add_source("pinned-wrong", fingerprint="00" * 32)
        with pytest.raises(remote.Untrusted, match="fingerprint"):
            fetcher.fetch("acme", "pinned-wrong")
        cert = x509.load_pem_x509_certificate(certificate[0].read_bytes())
        pinned = cert.fingerprint(hashes.SHA256()).hex(":")
        customer.add_source("pinned", fingerprint=pinned)
        assert len(fetcher.fetch("acme", "pinned").fetched) == 1
    finally:
        server.stop()


def test_sftp_checks_the_host_key(tmp_path, accounts, certificate, home, clock):
    root = tmp_path / "customer"
    root.mkdir()
    server = CustomerSftp(root)
    try:
        customer = Customer("sftp", root, server, accounts, certificate)
        empty = tmp_path / "known_hosts"
        empty.write_text("")
        customer.add_source(fingerprint=None, known_hosts=str(empty))
        pin = re.escape(f"pin it: --fingerprint {server.fingerprint}")
        with pytest.raises(remote.Untrusted, match=pin):
            Fetcher(home, KEY, clock=clock).fetch("acme", "nightly")
        assert server.failed_logins == 0
    finally:
        server.stop()


def test_after_a_restart_a_failed_run_is_tried_again_at_once_unless_the_login_was_refused(
        ftp_customer, home, clock):
    put(ftp_customer.root, "contacts.csv", DATA)
    ftp_customer.add_source(secret=credentials.encrypt("wrong-password", KEY))
    fetcher = Fetcher(home, KEY, clock=clock)
    clock.moment = SIX - timedelta(seconds=1)
    fetcher.run_due()
    clock.moment = SIX
    fetcher.run_due()
    assert ftp_customer.server.connections == 1

    # A restart does not try a refused login again before the next scheduled run
    clock.moment = SIX + timedelta(hours=1)
    Fetcher(home, KEY, clock=clock).run_due()
    assert ftp_customer.server.connections == 1

    # but it does try again a run that failed for another reason (the server was down)
    ftp_customer.add_source()  # the right password
    state = Fetcher(home, KEY).state("acme", "nightly")
    home.pull_state("acme", "nightly").write_text(json.dumps({**state, "refused": False}))
    Fetcher(home, KEY, clock=clock).run_due()
    assert len(arrivals(home)) == 1


def test_a_server_without_mlsd_is_listed_with_size_and_mdtm(tmp_path, accounts, home, clock,
                                                            certificate):
    root = tmp_path / "customer"
    root.mkdir()
    server = CustomerFtp(root, mlsd=False)
    try:
        moment = datetime(2026, 11, 24, 22, 30, 5, tzinfo=UTC)
        put(root, "contacts.csv", DATA, mtime=moment)
        Customer("ftp", root, server, accounts, certificate).add_source()
        fetcher = Fetcher(home, KEY, clock=clock)
        [(file, new)] = fetcher.test("acme", "nightly")
        assert (file.size, file.mtime, new) == (len(DATA), moment.timestamp(), True)
        fetcher.fetch("acme", "nightly")
        assert arrivals(home)[0][1] == DATA
    finally:
        server.stop()


def test_a_file_beyond_the_account_max_file_size_is_not_fetched(ftp_customer, fetcher, home,
                                                                accounts):
    accounts.update("acme", max_file_size=1000)
    put(ftp_customer.root, "contacts.csv", DATA)
    ftp_customer.add_source()
    with pytest.raises(remote.RemoteError, match="more than the account's max_file_size"):
        fetcher.fetch("acme", "nightly")
    assert arrivals(home) == []
