"""What an upload's name says of its packing, and which forms a template takes."""

import pytest

from dropimport.packaging import Packing, expected_forms, forms, packing, refusal
from schemas import template_with_defaults

TEMPLATE = template_with_defaults({"file": "contacts.csv", "columns": [], "fields": {}})


@pytest.mark.parametrize("name, packed", [
    ("contacts.csv", Packing("contacts.csv", None, False)),
    ("contacts.csv.gz", Packing("contacts.csv", "gzip", False)),
    ("contacts.csv.ZIP", Packing("contacts.csv", "zip", False)),
    ("contacts.csv.pgp", Packing("contacts.csv", None, True)),
    ("contacts.csv.gz.asc", Packing("contacts.csv", "gzip", True)),
    ("contacts.csv.zip.gpg", Packing("contacts.csv", "zip", True)),
    ("contacts.csv.pgp.gz", Packing("contacts.csv.pgp", "gzip", False)),  # the order counts
    (".gz", Packing(".gz", None, False)),
])
def test_a_name_says_the_file_inside_and_its_wrappings(name, packed):
    assert packing(name) == packed


def test_every_form_of_a_file_is_known_from_any_of_them():
    assert forms("contacts.csv.gz.pgp") == forms("contacts.csv")
    assert len(set(forms("contacts.csv"))) == 12
    assert {"contacts.csv", "contacts.csv.zip", "contacts.csv.gz.asc"} <= set(forms("contacts.csv"))


def test_by_default_a_template_takes_the_file_clear_or_compressed():
    assert [refusal(TEMPLATE, n) for n in ("contacts.csv", "contacts.csv.gz", "contacts.csv.zip")
            ] == [None, None, None]
    assert "(encryption: none)" in refusal(TEMPLATE, "contacts.csv.pgp")
    assert expected_forms(TEMPLATE) == "contacts.csv (or contacts.csv.gz, contacts.csv.zip)"


def test_an_encrypting_template_refuses_a_clear_file_naming_the_expected_ones():
    template = TEMPLATE | {"encryption": "openpgp"}
    assert refusal(template, "contacts.csv.gz.pgp") is None
    assert refusal(template, "contacts.csv.gz") == (
        "'contacts.csv.gz' must be encrypted with OpenPGP to this account's key; upload "
        "contacts.csv.pgp, .gpg or .asc (or compressed first: contacts.csv.gz.pgp, "
        "contacts.csv.zip.pgp)")
