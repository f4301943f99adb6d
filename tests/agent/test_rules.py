"""What an account may upload, without a server: expected names, uploads an hour."""

import pytest

from agent.rules import UploadRate, deletable, is_expected, name_refusal, preview_of, refusal
from dropimport.accounts import Registry

CONTACTS = {"file": "contacts.csv"}
ORDERS = {"file": "orders-*.csv", "completion": {"marker": ".done"}}
LEADS = {"file": "leads.csv", "completion": {"marker": ".ok"}}


@pytest.mark.parametrize("name, expected", [
    ("contacts.csv", True),
    ("Contacts.csv", False),
    ("contacts.csv.bak", False),
    ("xcontacts.csv", False),
    ("leads.csv", True),
    ("leads.csv.ok", True),
    ("leads.csv.done", False),
    ("orders-2026-11.csv", True),
    ("orders-2026-11.csv.done", True),
    ("orders.csv", False),
    ("clients.txt", False),
    ("contacts.csv.gz", True),
    ("contacts.csv.gz.pgp", True),
    ("leads.csv.zip.ok", True),
    ("orders-2026-11.csv.asc.done", True),
    ("contacts.gz", False),
    ("contacts.csv.tar", False),
])
def test_names_are_expected_exactly_by_glob_or_as_a_marker(name, expected):
    assert is_expected(name, [CONTACTS, ORDERS, LEADS]) is expected


@pytest.mark.parametrize("name", ["event.json", ".published", ".failed", ".x.csv"])
def test_no_pattern_lets_in_a_name_the_spool_keeps_for_itself(name):
    # A glob that would match it: the upload would take the place of its event or a marker
    assert not is_expected(name, [{"file": "*"}, {"file": "*.json"}, {"file": "event.json"}])


def test_a_plain_name_is_not_a_pattern():
    assert is_expected("a.csv", [{"file": "a.csv"}])
    assert not is_expected("aXcsv", [{"file": "a.csv"}])


def test_name_refusal_applies_the_templates_packing_options(home, demo_template):
    registry = Registry(home)
    registry.create("acme", "acme", "pw")
    template = demo_template
    registry.set_template("acme", template)
    assert name_refusal(registry, "acme", "contacts.csv.gz") is None
    assert "takes no encrypted file" in name_refusal(registry, "acme", "contacts.csv.pgp")
    registry.set_template("acme", template | {"encryption": "openpgp", "compression": "none"})
    assert name_refusal(registry, "acme", "contacts.csv.gpg") is None
    assert name_refusal(registry, "acme", "contacts.csv") == (
        "'contacts.csv' must be encrypted with OpenPGP to this account's key; upload "
        "contacts.csv.pgp, .gpg or .asc")
    assert "takes no compressed file" in name_refusal(registry, "acme", "contacts.csv.gz.pgp")


def test_a_refusal_says_which_names_are_expected():
    assert refusal("clients.txt", [CONTACTS]) == (
        "'clients.txt' is not expected here; upload contacts.csv")
    assert refusal("x.csv", [CONTACTS, LEADS]) == (
        "'x.csv' is not expected here; upload contacts.csv, leads.csv (+ .ok)")
    assert "no import template" in refusal("x.csv", [])
    many = [{"file": f"f{n}.csv"} for n in range(12)]
    assert refusal("x.csv", many).endswith("f9.csv, ...")


@pytest.mark.parametrize("can_delete_reports", [False, True])
def test_what_a_login_may_delete(home, can_delete_reports):
    # Given acme's folders, each with a file, and globex's export
    account = {"name": "acme", "can_delete_reports": can_delete_reports}
    home.make_root("acme")
    home.make_root("globex")
    for folder in (home.ftp_root("acme"), home.reports("acme"), home.dryrun("acme"),
                   home.exports("acme"), home.exports("globex")):
        (folder / "f.csv").write_text("x")
    # Then its exports always, its reports if it may, nothing else: no folder, no other root
    assert deletable(home, account, str(home.exports("acme") / "f.csv"))
    assert deletable(home, account, str(home.reports("acme") / "f.csv")) is can_delete_reports
    for path in (home.ftp_root("acme") / "f.csv", home.dryrun("acme") / "f.csv",
                 home.exports("acme"), home.reports("acme"), home.exports("acme") / "gone.csv",
                 home.exports("globex") / "f.csv"):
        assert not deletable(home, account, str(path))


def test_nothing_is_uploaded_into_exports(home):
    home.make_root("acme")
    assert preview_of(home, "acme", str(home.exports("acme") / "contacts.csv")) is None
    assert preview_of(home, "acme", str(home.ftp_root("acme") / "contacts.csv")) is False


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_uploads_an_hour_are_counted_over_a_sliding_window():
    clock = Clock()
    rate = UploadRate(clock=clock)
    # Given two uploads admitted at 0 and 1800 s, with a limit of 2
    assert rate.admit("acme", 2).admitted
    clock.now = 1800
    assert rate.admit("acme", 2).admitted
    # Then a third is refused until the first leaves the window; the first refusal is the one
    # to log, and another account is not affected
    refused = rate.admit("acme", 2)
    assert (refused.admitted, refused.retry_after, refused.first_refusal) == (False, 1800, True)
    assert refused.refusal(2).startswith("Upload limit reached: 2 files an hour")
    assert "upload again in 30 minutes" in refused.refusal(2)
    clock.now = 3599
    assert rate.admit("acme", 2) == (False, 1, False)
    assert rate.admit("globex", 2).admitted
    clock.now = 3600
    assert rate.admit("acme", 2).admitted
    # And a refusal is logged again only an hour after the last one logged
    clock.now = 3601
    assert rate.admit("acme", 2).first_refusal is False
    clock.now = 1800 + 3600
    assert rate.admit("acme", 2).admitted


def test_a_lowered_limit_counts_the_uploads_already_made():
    clock = Clock()
    rate = UploadRate(clock=clock)
    for now in (0, 10, 20):
        clock.now = now
        rate.admit("acme", 5)
    # The next is admitted once all three left the window: the last at 3620 s
    assert rate.admit("acme", 1).retry_after == 3600
