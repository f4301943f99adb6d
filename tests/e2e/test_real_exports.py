"""Files shaped like real exports, uploaded over FTP, imported field by field."""

import io
from pathlib import Path

import pytest

EXPORTS = Path(__file__).parent / "exports"
# file -> (encoding, delimiter) the import must detect
SHAPES = {
    "excel-fr.csv": ("cp1252", ";"),  # Excel FR "CSV (separator: semicolon)", CRLF
    "excel-csv-utf8.csv": ("utf-8-sig", ";"),  # Excel "CSV UTF-8": BOM
    "excel-unicode-text.txt": ("utf-16", "\t"),  # Excel "Unicode text": UTF-16 LE, BOM, TAB
    "google-sheets.csv": ("utf-8", ","),  # Google Sheets: UTF-8, comma, CRLF
    "libreoffice.csv": ("utf-8", ","),  # LibreOffice default: UTF-8, comma, LF
    "mac-cr.csv": ("cp1252", ";"),  # old Mac Excel: CR-only line endings
}


def expected(newline):
    return {
        "chloe.lefevre@example.fr": {
            "email": "chloe.lefevre@example.fr", "civility": "mrs", "first_name": "Chloé",
            "last_name": "Lefèvre, née Dupré", "phone": "+33612345678",
            "birth_date": "1990-02-03", "zip": "01000", "city": "Bourg-en-Bresse",
            "interests": f"Vélo{newline}Rando", "unsubscribed": False},
        "francois.obrien@example.com": {
            "email": "francois.obrien@example.com", "civility": "mr", "first_name": "François",
            "last_name": "O'Brien", "phone": "+33123456789", "birth_date": "1985-12-31",
            "zip": "75011", "city": "Paris", "interests": 'Le "bon" vin; fromages',
            "unsubscribed": False},
        "zoe.oeuvray@example.org": {
            "email": "zoe.oeuvray@example.org", "civility": "miss", "first_name": "Zoë",
            "last_name": "Œuvray", "phone": "+33698765432", "birth_date": None,
            "zip": "42000", "city": "Saint-Étienne", "interests": "Musique – 12 €",
            "unsubscribed": False},
    }


def test_real_exports_are_imported_field_by_field(system):
    # Given one account per export shape, each with the same template (encoding and
    # delimiter "auto")
    accounts = {}
    for number, name in enumerate(SHAPES):
        account = f"shape{number}"
        system.cli("account", "create", account, "--ftp-user", account, "--password-stdin",
                   input="pw\n")
        system.cli("template", "set", account, str(EXPORTS / "template.json"))
        accounts[name] = account
    # When each uploads its file as contacts.csv over FTP
    for name, account in accounts.items():
        with system.ftp(account, "pw") as ftp:
            ftp.storbinary("STOR contacts.csv", io.BytesIO((EXPORTS / name).read_bytes()))
    system.wait_for_imports(len(SHAPES))
    for name, account in accounts.items():
        [record] = system.imports(account)
        # Then the encoding and delimiter were detected
        assert (record["status"], record["encoding"], record["delimiter"]) == (
            "imported", *SHAPES[name]), name
        # And the three good contacts are there, field by field
        newline = "\r" if name == "mac-cr.csv" else "\n"
        assert system.contacts(account) == expected(newline), name
        # And the bad row is explained by its line, column and reason
        assert (record["rows"], record["created"], record["rejected_rows"]) == (4, 3, 1)
        shown = system.cli("imports", "show", record["id"]).stdout
        assert "rejected line 6, column 'E-mail': invalid e-mail 'jean.bad@'" in shown, name


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_export_fixtures_are_what_they_claim(name):
    data = (EXPORTS / name).read_bytes()
    encoding, delimiter = SHAPES[name]
    text = data.decode({"utf-8-sig": "utf-8-sig"}.get(encoding, encoding))
    assert text.startswith(f"Civilité{delimiter}Prénom")
    assert ("\r" in text) == (name != "libreoffice.csv")
