"""A template proposed from a sample: header, names, types, --map, and the real command."""

import json
import subprocess

import pytest

from schemas import template_with_defaults
from tests.harness import DROPIMPORT
from tests.worker.read.test_template import Outcome, plan
from worker.read import csvfile
from worker.read.csvfile import Dialect
from worker.read.fields import converter
from worker.read.rows import contacts
from worker.read.template import check
from worker.sample import (
    Sample,
    SampleError,
    field_for,
    guess,
    has_header,
    propose,
    read_sample,
    slug,
)

EXCEL_FR = Dialect("cp1252", ";")
EXCEL_FR_HEADER = ("Civilité;Prénom;Nom;E-mail;Téléphone;Date de naissance;Code postal;Ville;"
                   "Société;Newsletter")
EXCEL_FR_ROWS = (
    "Mme;Chloé;Lefèvre;Chloe.Lefevre@Example.fr ;06 12 34 56 78;03/02/1990;01000;"
    "Bourg-en-Bresse;Vélos & Cie;Oui",
    "M.;François;O'Brien;francois.obrien@example.com;+33 1 23 45 67 89;31/12/1985;75011;"
    "Paris;;Non",
    "Mlle;Zoë;Œuvray;zoe.oeuvray@example.org;0033 6 98 76 54 32;;42000;Saint-Étienne;"
    "Œuvres SARL;oui",
)

PHONE_FR = {"type": "phone", "region": "FR", "invalid": "empty"}


def sample(*lines, dialect=EXCEL_FR, file="contacts.csv"):
    """A Sample of `lines`, each split on the dialect's delimiter."""
    return Sample(file, dialect, tuple(tuple(line.split(dialect.delimiter)) for line in lines))


def imported(template, rows, header):
    """The fields of each contact the template imports from `rows`, and the rejections."""
    outcome = Outcome()
    found = contacts(plan(template, header), enumerate(rows, 2), outcome)
    return [contact.fields for contact in found], outcome.rejections


# Given a header name, then the contact field it stands for (None: a custom field)
@pytest.mark.parametrize(("column", "field"), [
    ("E-mail", "email"), ("EMAIL", "email"), ("e_mail", "email"), ("Courriel", "email"),
    ("Adresse e-mail", "email"), ("Adresse mail", "email"), ("E-mail address", "email"),
    ("Mail", "email"),
    ("Prénom", "first_name"), ("PRENOM", "first_name"), ("First name", "first_name"),
    ("Given-Name", "first_name"),
    ("Nom", "last_name"), ("Nom de famille", "last_name"), ("Surname", "last_name"),
    ("Family name", "last_name"),
    ("Téléphone", "phone"), ("Tél.", "phone"), ("TEL", "phone"), ("Portable", "phone"),
    ("GSM", "phone"), ("Numéro de téléphone", "phone"), ("Mobile", "phone"),
    ("Date de naissance", "birth_date"), ("Né le", "birth_date"), ("Date of birth", "birth_date"),
    ("DOB", "birth_date"),
    ("Code postal", "zip"), ("CP", "zip"), ("Zip code", "zip"), ("Post-code", "zip"),
    ("Ville", "city"), ("Town", "city"), ("Commune", "city"),
    ("Civilité", "civility"), ("CIVILITE", "civility"), ("Salutation", "civility"),
    ("Société", "company"), ("Entreprise", "company"), ("Organization", "company"),
    ("Pays", "country"), ("Country", "country"),
    ("Adresse", "address"), ("Address", "address"),
    ("ID", "external_id"), ("Identifiant", "external_id"), ("Id client", "external_id"),
    ("Customer ID", "external_id"), ("Référence client", "external_id"),
    ("Opt-in", "optin"), ("Newsletter", "optin"), ("Consentement", "optin"),
    ("Abonné", "optin"),
    ("Centre d'intérêt", None), ("Name", None), ("Date d'inscription", None),
])
def test_a_header_name_maps_to_its_field(column, field):
    assert field_for(column) == field


@pytest.mark.parametrize(("column", "name"), [
    ("Centre d'intérêt", "centre_d_interet"),
    ("Œuvre préférée", "oeuvre_preferee"),
    ("  Date d'inscription ", "date_d_inscription"),
    ("Nb. d'achats (2024)", "nb_d_achats_2024"),
    ("2e prénom", "field_2e_prenom"),
    ("€", "field"),
])
def test_a_custom_field_is_named_by_a_slug_of_its_column(column, name):
    assert slug(column) == name


def test_a_long_column_name_still_makes_a_valid_field_name():
    assert len(slug("Très " * 40)) <= 63


# Given a field and the distinct values of its column in the sample, then its type and options
@pytest.mark.parametrize(("field", "values", "spec"), [
    ("email", ["a@b.fr", "not an address"], {"type": "email"}),
    ("email", [], {"type": "email"}),
    ("phone", ["06 12 34 56 78", "+33 1 23 45 67 89", "0033 6 98 76 54 32", "06"], PHONE_FR),
    ("phone", ["unknown", "n/a"], PHONE_FR),  # a standard key is of its own type
    ("phone", [], PHONE_FR),
    # dates: the format that reads every value, day first when both could
    ("birth_date", ["03/02/1990", "31/12/1985"], {"type": "date", "format": "%d/%m/%Y"}),
    ("birth_date", ["03/02/1990", "04/05/1991"], {"type": "date", "format": "%d/%m/%Y"}),
    ("birth_date", ["12/31/1985", "02/03/1990"], {"type": "date", "format": "%m/%d/%Y"}),
    ("birth_date", ["1990-02-03"], {"type": "date", "format": "%Y-%m-%d"}),
    ("birth_date", ["03-02-1990"], {"type": "date", "format": "%d-%m-%Y"}),
    ("inscription", ["03.02.1990"], {"type": "date", "format": "%d.%m.%Y"}),
    ("birth_date", ["03/02/1990", "32/01/2000"], {}),
    ("birth_date", ["03/02/90"], {}),
    # booleans in the default vocabulary, case aside
    ("optin", ["Oui", "non", "OUI"], {"type": "boolean"}),
    ("optin", ["1", "0"], {"type": "boolean"}),
    ("vip", ["x"], {"type": "boolean"}),
    ("enfants", ["1", "0"], {"type": "integer"}),
    ("optin", ["peut-être", "oui"], {}),
    # numbers, but never a code whose leading zeros matter
    ("points", ["12", "1 200", "-3"], {"type": "integer"}),
    ("solde", ["12,50", "3", "1 234,5"], {"type": "decimal", "decimal_separator": ","}),
    ("solde", ["12.50", "3"], {"type": "decimal"}),
    ("solde", ["12.50", "3,5"], {}),
    ("zip", ["01000", "75011"], {}),
    ("zip", ["75011", "69001"], {}),
    ("external_id", ["123", "456"], {}),
    ("code_client", ["123", "456"], {}),
    ("matricule", ["007", "12"], {}),
    # civility: the codes present, every spelling of them mapped
    ("civility", ["M.", "Mme", "Mlle"], {
        "type": "enum", "values": ["mr", "mrs", "miss"], "mapping": {
            "M.": "mr", "M": "mr", "Mr.": "mr", "Monsieur": "mr", "Mme": "mrs", "Mme.": "mrs",
            "Mrs.": "mrs", "Madame": "mrs", "Mlle": "miss", "Mlle.": "miss",
            "Mademoiselle": "miss"}}),
    ("civility", ["Mr", "MS", "Madame"], {
        "type": "enum", "values": ["mr", "mrs", "ms"], "mapping": {
            "M.": "mr", "M": "mr", "Mr.": "mr", "Monsieur": "mr", "Mme": "mrs", "Mme.": "mrs",
            "Mrs.": "mrs", "Madame": "mrs", "Ms.": "ms"}}),
    ("civility", ["M.", "Dr"], {}),
    # a standard field is typed only as its name says
    ("city", ["Paris", "Lyon"], {}),
    ("last_name", ["Y", "N"], {}),
    ("company", ["3", "12"], {}),
    ("birth_date", ["oui", "non"], {}),
    ("optin", ["12", "0"], {}),
    ("first_name", [], {}),
])
def test_a_type_is_guessed_from_the_values(field, values, spec):
    assert guess(field, values) == spec
    convert = converter(spec)
    if spec.get("type") not in ("email", "phone"):
        for value in values if spec else ():
            convert(value)  # every value of the sample imports


# Given the first rows of a file, then whether the first one is a header
@pytest.mark.parametrize(("rows", "header"), [
    ([["E-mail", "Nom"], ["a@b.fr", "Dupont"]], True),
    ([["a@b.fr", "Dupont"], ["c@d.fr", "Durand"]], False),
    ([["Paul", "03/02/1990"], ["Jean", "04/05/1991"]], False),
    ([["Paul", "12"], ["Jean", "14"]], False),
    ([["Nom", "Âge"], ["Jean", "14"]], True),
    ([["2024", "Nom"], ["Dupont", "Jean"]], True),  # a number, over names: a column name
    ([["a@b.fr", "Dupont"]], False),
    ([["E-mail", "Nom"]], True),
])
def test_header_is_detected(rows, header):
    assert has_header(rows) is header


def test_an_excel_fr_sample_maps_every_column():
    template = check(propose(sample(EXCEL_FR_HEADER, *EXCEL_FR_ROWS)))
    assert template["file"] == "contacts.csv"
    assert template["columns"] == EXCEL_FR_HEADER.split(";")
    assert template["format"] == {"encoding": "cp1252", "delimiter": ";"}
    assert "header" not in template
    assert (template["match_on"], template["mode"]) == ("email", "upsert")
    fields = template["fields"]
    assert {name: spec["column"] for name, spec in fields.items()} == {
        "civility": "Civilité", "first_name": "Prénom", "last_name": "Nom", "email": "E-mail",
        "phone": "Téléphone", "birth_date": "Date de naissance", "zip": "Code postal",
        "city": "Ville", "company": "Société", "optin": "Newsletter",
    }
    assert fields["email"] == {"column": "E-mail", "type": "email", "required": True}
    assert fields["phone"] == {"column": "Téléphone", **PHONE_FR}
    assert fields["birth_date"] == {"column": "Date de naissance", "type": "date",
                                    "format": "%d/%m/%Y"}
    assert fields["zip"] == {"column": "Code postal"}
    assert fields["optin"] == {"column": "Newsletter", "type": "boolean"}
    assert fields["civility"]["values"] == ["mr", "mrs", "miss"]


def test_every_other_column_becomes_a_custom_field_with_a_unique_name():
    template = check(propose(sample("E-mail;Centre d'intérêt;Note;NOTE;Email",
                                    "a@b.fr;Vélo;1;2;c@d.fr")))
    assert {name: spec["column"] for name, spec in template["fields"].items()} == {
        "email": "E-mail", "centre_d_interet": "Centre d'intérêt", "note": "Note",
        "note_2": "NOTE", "email_2": "Email",
    }


def test_a_trailing_delimiter_leaves_no_empty_column():
    template = check(propose(sample("E-mail;Nom;", "a@b.fr;Dupont;")))
    assert template["columns"] == ["E-mail", "Nom"]
    found, rejections = imported(template, [["a@b.fr", "Dupont", ""]], ["E-mail", "Nom", ""])
    assert (found, rejections) == ([{"email": "a@b.fr", "last_name": "Dupont"}], [])


def test_a_sample_without_rows_is_proposed_from_its_header():
    template = check(propose(sample(EXCEL_FR_HEADER)))
    types = {name: spec.get("type", "text") for name, spec in template["fields"].items()}
    assert types == {**dict.fromkeys(types, "text"), "email": "email", "phone": "phone"}


def test_without_header_fields_map_by_position():
    rows = ["Dupont,jo@x.fr,0612345678,03/02/1990,", "Durand,al@y.fr,,04/05/1991,"]
    template = check(propose(sample(*rows, dialect=Dialect("utf-8", ","))))
    assert template["header"] is False
    assert template["columns"] == ["column 1", "column 2", "column 3", "column 4"]
    assert template["fields"] == {
        "column_1": {"column": 1},
        "email": {"column": 2, "type": "email", "required": True},
        "phone": {"column": 3, **PHONE_FR},
        "column_4": {"column": 4, "type": "date", "format": "%d/%m/%Y"},
    }
    found, rejections = imported(template, [row.split(",") for row in rows], None)
    assert rejections == []
    assert found[0] == {"column_1": "Dupont", "email": "jo@x.fr", "phone": "+33612345678",
                        "column_4": "1990-02-03"}


MAPPED = ("Mail;Contact;Prénom;Nom;Centre d'intérêt", "a@b.fr;c@d.fr;Jo;Dupont;Vélo")


# Given --map options, then the column of each field
@pytest.mark.parametrize(("maps", "columns"), [
    ([], {"email": "Mail", "contact": "Contact", "first_name": "Prénom", "last_name": "Nom",
          "centre_d_interet": "Centre d'intérêt"}),
    # the field taken from another column: that one becomes a custom field
    (["Contact=email"], {"mail": "Mail", "email": "Contact", "first_name": "Prénom",
                         "last_name": "Nom", "centre_d_interet": "Centre d'intérêt"}),
    (["2=email"], {"mail": "Mail", "email": "Contact", "first_name": "Prénom",
                   "last_name": "Nom", "centre_d_interet": "Centre d'intérêt"}),
    ([" CONTACT = email"], {"mail": "Mail", "email": "Contact", "first_name": "Prénom",
                            "last_name": "Nom", "centre_d_interet": "Centre d'intérêt"}),
    (["Nom=-", "Centre d'intérêt=interests"], {
        "email": "Mail", "contact": "Contact", "first_name": "Prénom",
        "interests": "Centre d'intérêt"}),
    (["5=interests", "Contact=interests"], {
        "email": "Mail", "first_name": "Prénom", "last_name": "Nom", "interests": "Contact",
        "centre_d_interet": "Centre d'intérêt"}),
    (["Nom=prenom", "Prénom=last_name", "Nom=first_name"], {
        "email": "Mail", "contact": "Contact", "last_name": "Prénom", "first_name": "Nom",
        "centre_d_interet": "Centre d'intérêt"}),
])
def test_map_overrides_the_proposal(maps, columns):
    template = check(propose(sample(*MAPPED), maps))
    assert {name: spec["column"] for name, spec in template["fields"].items()} == columns
    assert template["columns"] == MAPPED[0].split(";")


def test_a_mapped_column_is_typed_for_its_new_field():
    template = check(propose(sample("E-mail;Naissance;Portable", "a@b.fr;03/02/1990;0612345678"),
                             ["Naissance=birth_date", "Portable=phone"]))
    assert template["fields"]["birth_date"] == {"column": "Naissance", "type": "date",
                                                "format": "%d/%m/%Y"}
    assert template["fields"]["phone"] == {"column": "Portable", **PHONE_FR}


@pytest.mark.parametrize(("maps", "message"), [
    (["Courriel=email"], "--map Courriel=email: no column 'Courriel'; the columns are 1 'Mail', "
                         "2 'Contact', 3 'Prénom', 4 'Nom', 5 \"Centre d'intérêt\""),
    (["6=email"], "no column '6'"),
    (["0=email"], "no column '0'"),
    (["Contact=E-mail"], "bad field name 'E-mail'"),
    (["Contact"], "--map Contact: expected COLUMN=FIELD"),
    (["=email"], "expected COLUMN=FIELD"),
    (["Mail=-"], "no column to match contacts on: say which holds the e-mail with "
                 "--map COLUMN=email (or COLUMN=external_id, COLUMN=phone)"),
])
def test_a_bad_map_is_one_clear_error(maps, message):
    with pytest.raises(SampleError) as error:
        propose(sample(*MAPPED), maps)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("header", "match_on", "spec"), [
    ("Identifiant;Téléphone;Nom", "external_id", {"column": "Identifiant", "required": True}),
    ("Nom;Téléphone", "phone", {"column": "Téléphone", "type": "phone", "required": True,
                                "region": "FR", "invalid": "empty"}),
])
def test_without_email_contacts_match_on_external_id_then_phone(header, match_on, spec):
    rows = {"Identifiant;Téléphone;Nom": "0042;06 12 34 56 78;Dupont",
            "Nom;Téléphone": "Dupont;06 12 34 56 78"}
    template = check(propose(sample(header, rows[header])))
    assert template["match_on"] == match_on
    assert template["fields"][match_on] == spec


@pytest.mark.parametrize(("lines", "message"), [
    ((), "the sample has no rows"),
    (("E-mail;;Nom", "a@b.fr;x;y"), "column 2 of the header has no name"),
    (("E-mail;Nom;Nom", "a@b.fr;x;y"), "the header names 'Nom' more than once"),
    (("Nom;Ville", "Dupont;Lyon"), "no column to match contacts on"),
])
def test_a_sample_that_cannot_be_proposed_says_why(lines, message):
    with pytest.raises(SampleError, match=message):
        propose(sample(*lines))


def write_excel_fr(path, header=EXCEL_FR_HEADER, rows=EXCEL_FR_ROWS):
    path.write_bytes("\r\n".join([header, *rows, ""]).encode("cp1252"))
    return path


def test_read_sample_detects_the_dialect_and_reads_a_bounded_prefix(tmp_path):
    path = write_excel_fr(tmp_path / "contacts.csv", rows=EXCEL_FR_ROWS * 400)
    found = read_sample(path)
    assert (found.file, found.dialect) == ("contacts.csv", Dialect("cp1252", ";"))
    assert len(found.rows) == 1001
    assert found.rows[0] == tuple(EXCEL_FR_HEADER.split(";"))
    assert found.rows[3][2] == "Œuvray"


def test_a_zipped_sample_is_read_as_the_file_inside(tmp_path):
    plain = write_excel_fr(tmp_path / "contacts.csv")
    subprocess.run(["zip", "-q", "contacts.csv.zip", "contacts.csv"], cwd=tmp_path, check=True)
    found = read_sample(tmp_path / "contacts.csv.zip")
    assert (found.file, found.dialect) == ("contacts.csv", Dialect("cp1252", ";"))
    assert found == read_sample(plain)
    with pytest.raises(SampleError, match="encrypted sample"):
        read_sample(tmp_path / "contacts.csv.pgp")


@pytest.fixture
def cli(tmp_path):
    env = {"DROPIMPORT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}

    def run(*args, input=None):
        return subprocess.run([DROPIMPORT, *map(str, args)], env=env, input=input,
                              capture_output=True, text=True, timeout=60)

    created = run("account", "create", "acme", "--ftp-user", "acme", "--password-stdin",
                  input="pw\n")
    assert created.returncode == 0, created.stderr
    return run


def test_from_sample_saves_a_template_that_imports_the_sample(cli, tmp_path):
    # Given the customer's first manual import, exported by Excel FR
    path = write_excel_fr(tmp_path / "contacts.csv")
    # When a template is proposed from it
    result = cli("template", "from-sample", "acme", path)
    # Then stdout is the template alone, saved on the account for contacts.csv
    assert result.returncode == 0, result.stderr
    assert result.stderr == "template for contacts.csv saved on account acme\n"
    template = json.loads(result.stdout)
    shown = cli("template", "show", "acme", "contacts.csv")
    assert json.loads(shown.stdout) == template_with_defaults(template)
    # And it imports every row of the sample, read the way it says
    with csvfile.reading(path, **template["format"]) as (_, rows):
        (_, header), *data = rows
        outcome = Outcome()
        found = [c.fields for c in contacts(plan(template, header), data, outcome)]
    assert outcome.rejections == []
    assert found[0] == {
        "civility": "mrs", "first_name": "Chloé", "last_name": "Lefèvre",
        "email": "chloe.lefevre@example.fr", "phone": "+33612345678",
        "birth_date": "1990-02-03", "zip": "01000", "city": "Bourg-en-Bresse",
        "company": "Vélos & Cie", "optin": True,
    }
    assert [c["civility"] for c in found] == ["mrs", "mr", "miss"]
    assert found[2]["last_name"] == "Œuvray"


def test_from_sample_with_output_writes_the_file_and_saves_nothing(cli, tmp_path):
    path = write_excel_fr(tmp_path / "contacts.csv")
    output = tmp_path / "proposed.json"
    result = cli("template", "from-sample", "acme", path, "--output", output,
                 "--map", "Société=-")
    assert result.returncode == 0, result.stderr
    written = json.loads(output.read_text("utf-8"))
    assert written == json.loads(result.stdout)
    assert "company" not in written["fields"]
    assert "Société" in written["columns"]
    assert json.loads(cli("template", "show", "acme").stdout) == []
    assert cli("template", "set", "acme", output).returncode == 0  # as it is, once reviewed


def test_from_sample_without_email_column_needs_a_map(cli, tmp_path):
    path = write_excel_fr(tmp_path / "clients.csv", header="Contact;Nom",
                          rows=["jo@x.fr;Dupont", "al@y.fr;Durand"])
    failed = cli("template", "from-sample", "acme", path)
    assert failed.returncode != 0
    assert failed.stdout == ""
    [line] = failed.stderr.splitlines()
    assert line.startswith(f"Error: {path}: no column to match contacts on")
    assert "--map COLUMN=email" in line
    fixed = cli("template", "from-sample", "acme", path, "--map", "Contact=email")
    assert fixed.returncode == 0, fixed.stderr
    saved = json.loads(cli("template", "show", "acme", "clients.csv").stdout)
    assert saved["fields"]["email"] == {"column": "Contact", "type": "email", "required": True}


@pytest.mark.parametrize(("args", "message"), [
    (["globex", "{path}"], "Error: no account 'globex'"),
    (["acme", "{path}", "--map", "Courriel=email"], "Error: {path}: --map Courriel=email: "
                                                    "no column 'Courriel'; the columns are 1"),
    (["acme", "{missing}"], "Error: {missing}: No such file or directory"),
])
def test_from_sample_errors_are_one_clear_line(cli, tmp_path, args, message):
    path = write_excel_fr(tmp_path / "contacts.csv")
    names = {"path": path, "missing": tmp_path / "missing.csv"}
    result = cli("template", "from-sample", *(arg.format(**names) for arg in args))
    assert result.returncode != 0
    [line] = result.stderr.splitlines()
    assert line.startswith(message.format(**names))
