import io

import pytest

from worker import csvfile
from worker.fields import FieldError, email
from worker.template import Rejection, contacts, header_problem


@pytest.mark.parametrize(("cell", "stored"), [
    ("jo@x.com", "jo@x.com"),
    (" Jo@X.com ", "jo@x.com"),
    ("JEAN.DUPONT@EXAMPLE.COM", "jean.dupont@example.com"),
    ("élodie@exemple.fr", "élodie@exemple.fr"),
])
def test_email_is_trimmed_and_lower_cased(cell, stored):
    assert email(cell) == stored


@pytest.mark.parametrize("cell", ["not-an-email", "a@b", "jo@@x.com", "jo x@x.com"])
def test_invalid_email_says_why(cell):
    with pytest.raises(FieldError, match="invalid e-mail"):
        email(cell)


def test_same_header_has_no_problem(demo_template):
    assert header_problem(demo_template, ["E-mail", "Prénom", "Nom", "Ville"]) is None


@pytest.mark.parametrize(("header", "problem"), [
    (["E-mail", "Prenom", "Nom", "Ville"], "missing 'Prénom'; unexpected 'Prenom'"),
    (["E-mail", "Prénom", "Nom"], "missing 'Ville'"),
    (["E-mail", "Prénom", "Nom", "Ville", "Pays"], "unexpected 'Pays'"),
    (["Prénom", "E-mail", "Nom", "Ville"], "same columns in another order"),
])
def test_changed_header_names_the_columns(demo_template, header, problem):
    assert problem in header_problem(demo_template, header)


def read(text, delimiter=";"):
    return list(csvfile.rows(io.StringIO(text, newline=""), delimiter))


def test_rows_are_numbered_by_their_first_physical_line():
    text = 'a;b\r\n1;"two\r\nlines"\r\n\r\n3;4\r\n'
    assert read(text) == [(1, ["a", "b"]), (2, ["1", "two\r\nlines"]), (5, ["3", "4"])]


def test_contacts_map_fields_and_reject_bad_rows(demo_template):
    # Given rows after the header: a good one, a bad e-mail, a short row, an empty e-mail
    rows = [
        (2, [" Jo@X.com ", "Jo", "", "Lyon"]),
        (3, ["nope", "A", "B", "C"]),
        (4, ["a@b.fr", "A"]),
        (5, ["", "A", "B", "C"]),
    ]
    rejections = []
    # When they are mapped with the template
    result = list(contacts(demo_template, rows, rejections))
    # Then the valid row becomes a contact keyed by its normalised e-mail, empty cells left out
    assert result == [("jo@x.com", {"first_name": "Jo", "city": "Lyon"})]
    # And every other row is rejected with its line and reason
    assert [r.line for r in rejections] == [3, 4, 5]
    assert rejections[0].column == "E-mail"
    assert rejections[1] == Rejection(4, "expected 4 cells, found 2")
    assert rejections[2].reason == "required field email is empty"
