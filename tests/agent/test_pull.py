"""Pull mode's decisions and secrets, without any server."""

from datetime import UTC, datetime, timedelta

import pytest

from agent import pull
from dropimport import credentials, remote, schedule
from dropimport.remote import RemoteFile, remote_directory

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(("url", "expected"), [
    ("ftp://acme@ftp.acme.com/exports/contacts.csv",
     {"protocol": "ftp", "host": "ftp.acme.com", "port": 21, "user": "acme",
      "directory": "/exports", "file": "contacts.csv"}),
    ("ftps://acme@10.0.0.5:990/contacts.csv",
     {"protocol": "ftps", "host": "10.0.0.5", "port": 990, "user": "acme", "directory": "/",
      "file": "contacts.csv"}),
    ("sftp://it%40acme.com@sftp.acme.com/~/out/export-*.csv",
     {"protocol": "sftp", "host": "sftp.acme.com", "port": 22, "user": "it@acme.com",
      "directory": "~/out", "file": "export-*.csv"}),
])
def test_source_urls(url, expected):
    assert remote.parse_url(url) == expected
    assert remote.parse_url(remote.url_of(expected)) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("http://a@h/c.csv", "must start with ftp://, ftps:// or sftp://"),
    ("ftp://a:secret@h/c.csv", "must not hold the password"),
    ("ftp://h/c.csv", "write it like ftp://USER@HOST/DIR/FILE"),
    ("ftp://a@h/dir/", "must end with the file name"),
    ("ftp://a@h:port/c.csv", "the port is not a number"),
])
def test_bad_source_urls_say_why(url, message):
    with pytest.raises(remote.UrlError, match=message):
        remote.parse_url(url)


def test_remote_directories():
    assert remote_directory("/exports") == "/exports"
    assert remote_directory("~") == "."
    assert remote_directory("~/out") == "out"


def test_schedules_follow_cron_in_the_source_time_zone():
    source = {"schedule": "0 6 * * 1-5", "timezone": "Europe/Paris"}
    # Wednesday 06:00 UTC is 07:00 in Paris: the next run is Thursday 06:00 Paris, 05:00 UTC
    assert schedule.next_run(source, NOW) == datetime(2026, 11, 26, 5, 0, tzinfo=UTC)
    # Friday after the run: Monday
    friday = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert schedule.next_run(source, friday) == datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    with pytest.raises(schedule.ScheduleError, match="bad schedule"):
        schedule.check_schedule("at six")
    with pytest.raises(schedule.ScheduleError, match="unknown time zone"):
        schedule.check_schedule("0 6 * * *", "Mars/Olympus")


def test_the_run_due_is_the_latest_scheduled_time_at_or_before_now():
    daily = {"schedule": "0 6 * * *", "timezone": "Europe/Paris"}
    paris_six = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # 06:00 in Paris, in November
    # At the scheduled time itself, that time; a moment before, the day before's
    assert schedule.previous_run(daily, paris_six) == paris_six
    assert schedule.previous_run(daily, paris_six - timedelta(microseconds=1)) == \
        paris_six - timedelta(days=1)
    assert schedule.previous_run(daily, paris_six + timedelta(hours=20)) == paris_six
    # Summer time: 06:00 in Paris is 04:00 UTC
    assert schedule.previous_run(daily, datetime(2026, 3, 29, 12, 0, tzinfo=UTC)) == \
        datetime(2026, 3, 29, 4, 0, tzinfo=UTC)
    # Without a time zone, UTC; weekdays only: Monday's run is Friday's
    weekdays = {"schedule": "30 7 * * 1-5"}
    monday = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert schedule.previous_run(weekdays, monday) == datetime(2026, 11, 27, 7, 30, tzinfo=UTC)


def test_what_to_fetch():
    listing = {name: RemoteFile(name, size, 100.0) for name, size in
               [("contacts.csv", 10), ("export-1.csv", 5), ("export-2.csv", 7), ("x.txt", 1)]}
    assert [f.name for f in pull.matching(listing, "export-*.csv")] == \
        ["export-1.csv", "export-2.csv"]
    fetched = {"export-1.csv": {"size": 5, "mtime": 100.0, "sha256": "a"},
               "export-2.csv": {"size": 6, "mtime": 100.0, "sha256": "b"}}
    files = pull.matching(listing, "export-*.csv")
    assert [f.name for f in pull.to_fetch(files, fetched)] == ["export-2.csv"]


def test_no_pattern_fetches_a_name_the_spool_keeps_for_itself():
    listing = {name: RemoteFile(name, 1, 100.0) for name in
               ["event.json", ".published", "contacts.json"]}
    assert [f.name for f in pull.matching(listing, "*")] == ["contacts.json"]


def test_a_file_is_stable_when_two_listings_agree():
    first = [RemoteFile("a.csv", 10, 1.0), RemoteFile("b.csv", 10, 1.0),
             RemoteFile("c.csv", 10, 1.0)]
    later = {"a.csv": RemoteFile("a.csv", 10, 1.0), "b.csv": RemoteFile("b.csv", 12, 2.0)}
    ready, growing = pull.stable(first, later)
    assert [f.name for f in ready] == ["a.csv"]
    assert [f.name for f in growing] == ["b.csv", "c.csv"]


def test_retries_double_and_never_pass_the_next_run():
    scheduled = NOW + timedelta(days=1)
    delays = [pull.retry_at(n, NOW, scheduled, 30, 900) - NOW for n in range(1, 8)]
    assert [d.total_seconds() for d in delays] == [30, 60, 120, 240, 480, 900, 900]
    assert pull.retry_at(3, NOW, NOW + timedelta(seconds=45), 30, 900) == \
        NOW + timedelta(seconds=45)
    # A refused login waits for the next scheduled run
    assert pull.retry_at(1, NOW, scheduled, 30, 900, refused=True) == scheduled


def test_an_alert_is_raised_once_per_run_of_failures():
    assert [pull.alert_due(n, 3, alerted=n > 3) for n in range(1, 6)] == \
        [False, False, True, False, False]
    assert pull.alert_due(1, 3, alerted=False, refused=True)


def test_secrets_are_encrypted_or_referenced(tmp_path):
    key = credentials.new_key()
    secret = credentials.encrypt("p@ss", key)
    assert secret.startswith("fernet:") and "p@ss" not in secret
    assert credentials.reveal(secret, key) == "p@ss"
    assert credentials.shown(secret) == "encrypted"
    with pytest.raises(credentials.CredentialError, match="cannot be decrypted"):
        credentials.reveal(secret, credentials.new_key())
    with pytest.raises(credentials.CredentialError, match="DROPIMPORT_SECRET_KEY is not set"):
        credentials.reveal(secret, None)

    assert credentials.reveal("env:ACME_PW", None, {"ACME_PW": "from-env"}) == "from-env"
    with pytest.raises(credentials.CredentialError, match=r"ACME_PW .* is not set"):
        credentials.reveal("env:ACME_PW", None, {})
    path = tmp_path / "pw"
    path.write_text("from-file\n")
    assert credentials.reveal(f"file:{path}", None) == "from-file"
    assert credentials.shown(f"file:{path}") == f"file:{path}"
