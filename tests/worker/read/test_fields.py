from datetime import datetime
from decimal import Decimal

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from worker.read.fields import (
    INVALID,
    FieldError,
    _plain_email,
    _quick_moment,
    _quick_phone,
    converter,
)

TEXT = {"column": "Nom"}
EMAIL = {"column": "E-mail", "type": "email"}
PHONE_FR = {"column": "Tél", "type": "phone", "region": "FR"}
PHONE = {"column": "Tél", "type": "phone"}
BOOLEAN = {"column": "Optin", "type": "boolean"}
INTEGER = {"column": "Points", "type": "integer"}
DECIMAL_DOT = {"column": "Solde", "type": "decimal"}
DECIMAL_COMMA = {"column": "Solde", "type": "decimal", "decimal_separator": ","}
CIVILITY = {
    "column": "Civilité", "type": "enum", "values": ["mr", "mrs", "ms"],
    "mapping": {"M.": "mr", "Mme": "mrs", "Mlle": "ms", "Monsieur": "mr"},
}


def date(form):
    return {"column": "Date", "type": "date", "format": form}


def moment(form):
    return {"column": "Le", "type": "datetime", "format": form}


def rejects(spec, cell, *reasons):
    """Check that `cell` is a FieldError for `spec`, naming the cell and each of `reasons`."""
    with pytest.raises(FieldError) as error:
        converter(spec)(cell)
    message = str(error.value)
    for part in (repr(cell), *reasons):
        assert part in message


# Given a field spec and a cell, then the stored value is...
@pytest.mark.parametrize(("spec", "cell", "stored"), [
    # text
    (TEXT, "Dupont", "Dupont"),
    (TEXT, " spaces kept when trim is off ", " spaces kept when trim is off "),
    ({**TEXT, "type": "text"}, "x" * 10_000, "x" * 10_000),
    ({**TEXT, "max_length": 3}, "abc", "abc"),
    ({**TEXT, "max_length": 3}, "été", "été"),
    # email: lower-cased, the Unicode form of a domain kept, its punycode form turned into it
    (EMAIL, "jo@x.com", "jo@x.com"),
    (EMAIL, "Jo@X.com", "jo@x.com"),
    (EMAIL, "JEAN.DUPONT@EXAMPLE.COM", "jean.dupont@example.com"),
    (EMAIL, "jo+news@x.com", "jo+news@x.com"),
    (EMAIL, "Jo+News@X.com", "jo+news@x.com"),
    (EMAIL, "jo@exämple.fr", "jo@exämple.fr"),
    (EMAIL, "JO@EXÄMPLE.FR", "jo@exämple.fr"),
    (EMAIL, "jo@xn--exmple-cua.fr", "jo@exämple.fr"),
    (EMAIL, "JO@XN--EXMPLE-CUA.FR", "jo@exämple.fr"),
    (EMAIL, "jo@straße.de", "jo@straße.de"),
    (EMAIL, "élodie@exemple.fr", "élodie@exemple.fr"),
    (EMAIL, "Élodie@exemple.fr", "élodie@exemple.fr"),
    (EMAIL, "jo\u0301@x.fr", "j\u00f3@x.fr"),  # a combining accent is composed (NFC)
    (EMAIL, "用户@例子.广告", "用户@例子.广告"),
    # phone: E.164, from national, + and 00 forms with any punctuation
    (PHONE_FR, "06 12 34 56 78", "+33612345678"),
    (PHONE_FR, "0612345678", "+33612345678"),
    (PHONE_FR, "+33 6 12 34 56 78", "+33612345678"),
    (PHONE_FR, "+33612345678", "+33612345678"),
    (PHONE_FR, "0033 6 12 34 56 78", "+33612345678"),
    (PHONE_FR, "06.12.34.56.78", "+33612345678"),
    (PHONE_FR, "06-12-34-56-78", "+33612345678"),
    (PHONE_FR, "(06) 12 34 56 78", "+33612345678"),
    (PHONE_FR, "+33 (0)6 12 34 56 78", "+33612345678"),
    (PHONE_FR, "06\u00a012\u00a034\u00a056\u00a078", "+33612345678"),
    (PHONE_FR, "01 23 45 67 89", "+33123456789"),
    (PHONE_FR, "+44 20 7946 0958", "+442079460958"),
    (PHONE, "+33 6 12 34 56 78", "+33612345678"),
    ({**PHONE, "region": "GB"}, "020 7946 0958", "+442079460958"),
    ({**PHONE, "region": "US"}, "(650) 253-0000", "+16502530000"),
    ({**PHONE_FR, "invalid": "empty"}, "06 12 34 56 78", "+33612345678"),
    ({**PHONE_FR, "invalid": "empty"}, "06 12", None),
    ({**PHONE_FR, "invalid": "empty"}, "n/a", None),
    ({**PHONE_FR, "invalid": "empty"}, "0612345678 poste 12", None),
    ({**PHONE, "invalid": "empty"}, "06 12 34 56 78", None),
    # date and datetime: ISO
    (date("%d/%m/%Y"), "14/07/2024", "2024-07-14"),
    (date("%d/%m/%Y"), "29/02/2024", "2024-02-29"),
    (date("%d/%m/%Y"), "1/2/2024", "2024-02-01"),  # strptime takes unpadded numbers
    (date("%Y-%m-%d"), "2024-07-14", "2024-07-14"),
    (date("%d.%m.%y"), "14.07.24", "2024-07-14"),
    (date("%d.%m.%y"), "14.07.68", "2068-07-14"),  # %y pivots at 69
    (date("%d.%m.%y"), "14.07.69", "1969-07-14"),
    (date("%d %B %Y"), "14 July 2024", "2024-07-14"),
    (moment("%d/%m/%Y %H:%M"), "14/07/2024 09:05", "2024-07-14T09:05:00"),
    (moment("%Y-%m-%dT%H:%M:%S"), "2024-07-14T09:05:30", "2024-07-14T09:05:30"),
    (moment("%Y-%m-%dT%H:%M:%S%z"), "2024-07-14T09:05:30+0200", "2024-07-14T09:05:30+02:00"),
    (moment("%Y-%m-%dT%H:%M:%S%z"), "2024-07-14T09:05:30-05:30", "2024-07-14T09:05:30-05:30"),
    (moment("%Y-%m-%dT%H:%M:%S%z"), "2024-07-14T09:05:30Z", "2024-07-14T09:05:30+00:00"),
    (moment("%Y-%m-%d %H:%M:%S.%f"), "2024-07-14 09:05:30.25", "2024-07-14T09:05:30.250000"),
    # boolean: default vocabularies, any case
    *[(BOOLEAN, cell, True) for cell in
      ["1", "true", "TRUE", "True", "oui", "OUI", "Oui", "yes", "YES", "x", "X", "vrai", "VRAI",
       "y", "Y", "o", "O"]],
    *[(BOOLEAN, cell, False) for cell in
      ["0", "false", "FALSE", "non", "NON", "Non", "no", "NO", "faux", "Faux", "n", "N"]],
    # boolean: custom vocabularies replace the defaults
    ({**BOOLEAN, "true_values": ["Abonné"], "false_values": ["Désabonné"]}, "ABONNÉ", True),
    ({**BOOLEAN, "true_values": ["Abonné"], "false_values": ["Désabonné"]}, "désabonné", False),
    ({**BOOLEAN, "true_values": ["x"]}, "X", True),
    ({**BOOLEAN, "false_values": ["nein"]}, "NEIN", False),
    ({**BOOLEAN, "false_values": ["nein"]}, "oui", True),  # true keeps its defaults
    # integer: sign, thousands grouped by a space, a no-break or a narrow no-break space
    (INTEGER, "0", 0),
    (INTEGER, "42", 42),
    (INTEGER, "007", 7),
    (INTEGER, "+42", 42),
    (INTEGER, "-42", -42),
    (INTEGER, "-0", 0),
    (INTEGER, "1 234", 1234),
    (INTEGER, "1\u00a0234", 1234),
    (INTEGER, "1\u202f234", 1234),
    (INTEGER, "-1 234 567", -1234567),
    (INTEGER, "12 345\u00a0678", 12345678),
    (INTEGER, "123456789012345678901234567890", 123456789012345678901234567890),
    # decimal: canonical dot notation, scale kept
    (DECIMAL_DOT, "1234.50", "1234.50"),
    (DECIMAL_DOT, "1 234.50", "1234.50"),
    (DECIMAL_DOT, "-0.5", "-0.5"),
    (DECIMAL_DOT, "+3.0", "3.0"),
    (DECIMAL_DOT, ".5", "0.5"),
    (DECIMAL_DOT, "42", "42"),
    (DECIMAL_DOT, "007.10", "7.10"),
    (DECIMAL_DOT, "0.0000001", "0.0000001"),  # never an exponent
    (DECIMAL_DOT, "-0.00", "0.00"),
    (DECIMAL_DOT, "123456789012345678901234567890.5", "123456789012345678901234567890.5"),
    (DECIMAL_COMMA, "1 234,50", "1234.50"),
    (DECIMAL_COMMA, "1\u00a0234,50", "1234.50"),
    (DECIMAL_COMMA, "1\u202f234\u202f567,125", "1234567.125"),
    (DECIMAL_COMMA, "-0,5", "-0.5"),
    (DECIMAL_COMMA, ",5", "0.5"),
    (DECIMAL_COMMA, "10,00", "10.00"),
    (DECIMAL_COMMA, "10", "10"),
    # enum: canonical spelling from values or mapping, ignoring case and surrounding spaces
    (CIVILITY, "mr", "mr"),
    (CIVILITY, "MRS", "mrs"),
    (CIVILITY, " Ms ", "ms"),
    (CIVILITY, "M.", "mr"),
    (CIVILITY, "m.", "mr"),
    (CIVILITY, "MME", "mrs"),
    (CIVILITY, "mlle", "ms"),
    (CIVILITY, "monsieur", "mr"),
    ({"column": "Taille", "type": "enum", "values": ["S", "M", "XL"]}, "xl", "XL"),
    ({"column": "Taille", "type": "enum", "values": ["S", "M"], "mapping": {" small ": "S"}},
     "SMALL", "S"),
])
def test_stored_value(spec, cell, stored):
    assert converter(spec)(cell) == stored


@pytest.mark.parametrize(("spec", "cell", "reasons"), [
    # email
    (EMAIL, "jo@", ["invalid e-mail 'jo@'", "There must be something after the @-sign."]),
    (EMAIL, "jo.x.com", ["invalid e-mail", "must have an @-sign"]),
    (EMAIL, "jo@@x.com", ["invalid e-mail", "'@'"]),
    (EMAIL, "jo@a@x.com", ["invalid e-mail", "'@'"]),
    (EMAIL, "jo dupont@x.com", ["invalid e-mail", "SPACE"]),
    (EMAIL, "jo@x .com", ["invalid e-mail"]),
    (EMAIL, "jo@x.com.", ["invalid e-mail", "period"]),
    (EMAIL, "jo.@x.com", ["invalid e-mail", "period"]),
    (EMAIL, "@x.com", ["invalid e-mail"]),
    (EMAIL, "jo@x", ["invalid e-mail"]),
    (EMAIL, "jo@localhost", ["invalid e-mail"]),
    (EMAIL, "jo@exemple.local", ["invalid e-mail", "special-use"]),
    (EMAIL, "not-an-email", ["invalid e-mail"]),
    (EMAIL, "<jo@x.com>", ["invalid e-mail"]),
    (EMAIL, "Jo Dupont <jo@x.com>", ["invalid e-mail"]),
    (EMAIL, "jo@x.com; al@x.com", ["invalid e-mail"]),
    # phone
    (PHONE_FR, "06 12", ["invalid phone number '06 12' (region FR)"]),
    (PHONE_FR, "06 12 34 56 7", ["invalid phone number", "(region FR)"]),
    (PHONE_FR, "06 12 34 56 78 9", ["invalid phone number"]),
    (PHONE_FR, "abc", ["invalid phone number"]),
    (PHONE_FR, "06 12 34 AB CD", ["invalid phone number"]),  # not keypad letters
    (PHONE_FR, "06 12 34 56 78 poste 12", ["invalid phone number"]),
    (PHONE_FR, "06 12 34 56 78 #12", ["invalid phone number"]),  # E.164 has no extension
    (PHONE_FR, "06 12 34 56 78 / 06 98 76 54 32", ["invalid phone number"]),
    (PHONE_FR, "020 7946 0958", ["invalid phone number"]),  # a London number dialled in France
    (PHONE_FR, "+", ["invalid phone number"]),
    (PHONE_FR, "0" * 30, ["invalid phone number"]),
    (PHONE, "06 12 34 56 78", ["invalid phone number", "no region, so it must start with +"]),
    (PHONE, "0033 6 12 34 56 78", ["invalid phone number", "no region"]),
    ({**PHONE_FR, "invalid": "reject_row"}, "06 12", ["invalid phone number", "(region FR)"]),
    # date and datetime
    (date("%d/%m/%Y"), "31/02/2024", ["is not a date in the format %d/%m/%Y"]),
    (date("%d/%m/%Y"), "29/02/2023", ["is not a date in the format %d/%m/%Y"]),
    (date("%d/%m/%Y"), "2024-07-14", ["is not a date in the format %d/%m/%Y"]),
    (date("%d/%m/%Y"), "14/07/24", ["is not a date in the format %d/%m/%Y"]),
    (date("%d/%m/%Y"), "14/07/2024 09:05", ["is not a date in the format %d/%m/%Y"]),
    (date("%d/%m/%Y"), "13/13/2024", ["is not a date"]),
    (date("%d/%m/%Y"), "demain", ["is not a date"]),
    (date("%Y-%m-%d"), "14/07/2024", ["is not a date in the format %Y-%m-%d"]),
    (date("%d.%m.%y"), "14.07.2024", ["is not a date in the format %d.%m.%y"]),
    (moment("%d/%m/%Y %H:%M"), "14/07/2024", ["is not a date and time in the format"]),
    (moment("%d/%m/%Y %H:%M"), "14/07/2024 25:00", ["is not a date and time"]),
    (moment("%Y-%m-%dT%H:%M:%S%z"), "2024-07-14T09:05:30", ["is not a date and time"]),
    (moment("%Y-%m-%dT%H:%M:%S%z"), "2024-07-14T09:05:30 Paris", ["is not a date and time"]),
    # boolean
    (BOOLEAN, "peut-être", [
        "is not a boolean (true: 1, true, oui, yes, x, vrai, y, o; "
        "false: 0, false, non, no, faux, n)",
    ]),
    (BOOLEAN, "2", ["is not a boolean"]),
    (BOOLEAN, "ja", ["is not a boolean"]),
    ({**BOOLEAN, "true_values": ["x"]}, "0", ["is not a boolean (true: x)"]),
    ({**BOOLEAN, "true_values": ["Abonné"], "false_values": ["Désabonné"]}, "oui",
     ["(true: Abonné; false: Désabonné)"]),
    ({**BOOLEAN, "true_values": ["x"], "false_values": []}, "non", ["(true: x)"]),
    # integer
    (INTEGER, "abc", ["is not an integer"]),
    (INTEGER, "1.5", ["is not an integer"]),
    (INTEGER, "1,5", ["is not an integer"]),
    (INTEGER, "1,234", ["is not an integer"]),
    (INTEGER, "1.234", ["is not an integer"]),
    (INTEGER, "12e3", ["is not an integer"]),
    (INTEGER, "1_000", ["is not an integer"]),
    (INTEGER, "12 34", ["is not an integer"]),
    (INTEGER, "1234 567", ["is not an integer"]),
    (INTEGER, "1  234", ["is not an integer"]),
    (INTEGER, "1 234 ", ["is not an integer"]),
    (INTEGER, "- 5", ["is not an integer"]),
    (INTEGER, "+-5", ["is not an integer"]),
    (INTEGER, "5-", ["is not an integer"]),
    (INTEGER, "+", ["is not an integer"]),
    (INTEGER, "١٢", ["is not an integer"]),  # Arabic-Indic digits, which int() would take
    (INTEGER, "0x1F", ["is not an integer"]),
    (INTEGER, "9" * 5000, ["is not an integer"]),  # beyond what int() converts
    # decimal
    (DECIMAL_DOT, "1,5", ["is not a decimal number with '.' as separator"]),
    (DECIMAL_DOT, "1,234.5", ["is not a decimal number with '.' as separator"]),
    (DECIMAL_COMMA, "1.5", ["is not a decimal number with ',' as separator"]),
    (DECIMAL_COMMA, "1.234,5", ["is not a decimal number with ',' as separator"]),
    (DECIMAL_COMMA, "1 234.50", ["is not a decimal number"]),
    (DECIMAL_COMMA, "1,2,3", ["is not a decimal number"]),
    (DECIMAL_COMMA, "12 34,5", ["is not a decimal number"]),
    (DECIMAL_COMMA, "5,", ["is not a decimal number"]),
    (DECIMAL_COMMA, "1,5 €", ["is not a decimal number"]),
    (DECIMAL_DOT, "NaN", ["is not a decimal number"]),
    (DECIMAL_DOT, "-Infinity", ["is not a decimal number"]),
    (DECIMAL_DOT, "inf", ["is not a decimal number"]),
    (DECIMAL_DOT, "1e3", ["is not a decimal number"]),
    (DECIMAL_DOT, "1.5E-2", ["is not a decimal number"]),
    (DECIMAL_DOT, "1_000.5", ["is not a decimal number"]),
    (DECIMAL_DOT, ".", ["is not a decimal number"]),
    (DECIMAL_DOT, "abc", ["is not a decimal number"]),
    # enum
    (CIVILITY, "Dr", ["'Dr' is not one of: mr, mrs, ms"]),
    (CIVILITY, "M", ["is not one of: mr, mrs, ms"]),
    (CIVILITY, "Mme.", ["is not one of"]),
])
def test_invalid_cell_says_why(spec, cell, reasons):
    rejects(spec, cell, *reasons)


@pytest.mark.parametrize(("limit", "cell", "reason"), [
    (255, "x" * 300, "text of 300 characters is longer than max_length 255"),
    (3, "abcd", "text of 4 characters is longer than max_length 3"),
    (3, "été!", "text of 4 characters is longer than max_length 3"),
])
def test_text_longer_than_max_length_says_by_how_much(limit, cell, reason):
    # The text is not repeated: the report already names its line and column.
    with pytest.raises(FieldError, match=f"^{reason}$"):
        converter({**TEXT, "max_length": limit})(cell)


@pytest.mark.parametrize(("spec", "reason"), [
    ({"column": "A", "type": "mail"}, "unknown field type 'mail'"),
    ({**PHONE, "region": "ZZ"}, "unknown phone region 'ZZ'"),
    (date("%d/%m"), "does not read a full date"),
    (date("%Q/%m/%Y"), "does not read a full date"),
    (moment("%H:%M"), "does not read a full date"),
    ({**CIVILITY, "mapping": {"Dr": "dr"}}, "'dr' is not one of"),
    ({**CIVILITY, "mapping": {"Mr": "mr", "MRS": "mr"}}, "'MRS' means both 'mrs' and 'mr'"),
    ({"column": "A", "type": "enum", "values": ["a", "A"]}, "'A' means both 'a' and 'A'"),
    ({**BOOLEAN, "true_values": ["o", "n"], "false_values": ["n"]}, "'n' means both True and"),
])
def test_bad_spec_is_refused_before_any_cell(spec, reason):
    with pytest.raises(ValueError, match=reason) as error:
        converter(spec)
    assert not isinstance(error.value, FieldError)


def test_type_defaults_to_text():
    assert converter({"column": "A"})("  As Is ") == "  As Is "


def test_a_converter_serves_many_cells():
    # Given one converter per field, when it reads cells in turn, then none affects the next.
    convert = converter(CIVILITY)
    assert [convert(cell) for cell in ["M.", "Mme", "mr", "ms"]] == ["mr", "mrs", "mr", "ms"]
    with pytest.raises(FieldError):
        convert("Dr")
    assert convert("Mme") == "mrs"


@given(st.integers())
def test_integer_grouped_by_spaces_reads_back(n):
    grouped = f"{n:,}"
    for space in [" ", "\u00a0", "\u202f"]:
        assert converter(INTEGER)(grouped.replace(",", space)) == n
    assert converter(INTEGER)(str(n)) == n


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-10**12, max_value=10**12))
def test_decimal_with_comma_reads_back_as_its_dot_string(number):
    number = number.quantize(Decimal("0.01"))
    assume(not number.is_zero())  # -0.00 is stored 0.00, see test_stored_value
    dot = f"{number:.2f}"
    for written in [dot.replace(".", ","), f"{number:,.2f}".replace(",", " ").replace(".", ",")]:
        assert converter(DECIMAL_COMMA)(written) == dot
    assert converter(DECIMAL_DOT)(dot) == dot



ATOM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-."
#: Letters of customers' local parts (`chloé.thomas`), Latin ones that are upper case, that
#: lower-case to two characters (İ) or to ASCII (the Kelvin sign), a ligature, a combining
#: accent, a no-break space, and the two Latin-1 signs that are no letters.
LATIN = "éèçàïôÿÉÀŸİ\u212aǅœŒ\u0301\u00a0×÷ẞ"


def assert_stores(convert, value, judged):
    """`convert` stores `value` as the library judged it, or refuses it as the library did."""
    if judged is None:
        with pytest.raises(FieldError):
            convert(value)
    else:
        assert convert(value) == judged


@settings(max_examples=500, deadline=None)
@given(
    local=st.one_of(st.text(alphabet=ATOM, min_size=1, max_size=70),
                    st.text(alphabet=ATOM + LATIN * 3, min_size=1, max_size=70)),
    labels=st.lists(st.text(alphabet="abcxyzXN0189-", min_size=1, max_size=12), min_size=1,
                    max_size=4),
    top=st.sampled_from(["fr", "com", "COM", "test", "local", "io", "x", "xn--p1ai", "c0m"]),
    idn=st.sampled_from(["", "société", "München", "xn--socit-esab", "bücher-", "é" * 70,
                         "xn--zz", "ـ"]),
)
def test_the_plain_address_shortcut_agrees_with_email_validator(local, labels, top, idn):
    # Given any address shaped like the common case, ASCII or with letters of other
    # languages, at an internationalised domain or not, valid or not
    address = f"{local}@{'.'.join([*labels, idn, top] if idn else [*labels, top])}"
    fast = _plain_email(address.lower())
    try:
        judged = validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        judged = None
    # Then the shortcut only lets through what email-validator accepts, stored the same way
    if fast:
        assert judged == address.lower()
    # And what it lets through imports exactly as through email-validator
    convert = converter({"column": "E-mail", "type": "email"})
    assert_stores(convert, address, judged)
    # And its stored form is the one a fingerprint lookup asks for (template._ask)
    if fast:
        assert convert.lookup(address) == convert(address)


def _judged_by_phonenumbers(value, region):
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if number.extension or not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@settings(max_examples=1500, deadline=None)
@given(
    region=st.sampled_from(["FR", "DE", "BE", "ES", "CH", "NL", "PL", "US", "GB", "IT"]),
    lead=st.sampled_from(["", "+", "0", "00", "+33", "+49", "+34", "33", "0033", "+330", "1",
                          "+32 ", "+44 ", "+1 ", "+7", "+800", "+41", "(+33) ", "(+32)",
                          "+33 (0)", "+49(0)", "+39 (0)", "0032 ", "00 33", "0044", "000"]),
    groups=st.lists(st.text(alphabet="0123456789", min_size=1, max_size=4), min_size=1,
                    max_size=5),
    separator=st.sampled_from(["", " ", ".", "-", " - "]),
)
def test_the_plain_number_shortcut_agrees_with_phonenumbers(region, lead, groups, separator):
    # Given any number shaped like the common case, valid or not, in several regions
    value = lead + separator.join(groups)
    judged = _judged_by_phonenumbers(value, region)
    quick = _quick_phone(region)
    # Then the shortcut, where it answers, answers as phonenumbers does
    if quick(value) is INVALID:
        assert judged is None
    elif quick(value) is not None:
        assert quick(value) == judged
    # And the field stores exactly what phonenumbers makes of the value
    convert = converter({"type": "phone", "region": region})
    assert_stores(convert, value, judged)


def test_the_plain_number_shortcut_reads_the_common_shapes():
    # The shortcut must actually answer for the shapes customers send, or it buys nothing
    quick = _quick_phone("FR")
    for value in ("06 12 34 56 78", "06.12.34.56.78", "0612345678", "+33 6 12 34 56 78",
                  "01-23-45-67-89", "+33 (0)6 12 34 56 78", "(+33) 6 12 34 56 78",
                  "0033 6 12 34 56 78", "+33 06 12 34 56 78", "+32 479 12 34 56",
                  "+41 79 123 45 67", "+49 151 12345678"):
        assert quick(value) == _judged_by_phonenumbers(value, "FR"), value
    # And refuse the common invalid ones without asking phonenumbers
    for value in ("+33 6 93 12 34 56", "0693 12 34 56", "612"):
        assert quick(value) is INVALID and _judged_by_phonenumbers(value, "FR") is None
    # And read international numbers when the template has no region
    assert _quick_phone(None)("+33 6 12 34 56 78") == "+33612345678"


@settings(max_examples=1000, deadline=None)
@given(
    form=st.sampled_from(["%d/%m/%Y", "%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y", "%d-%m-%Y", "%d%m%Y",
                          "%d/%m/%Y %H:%M", "%Y-%m-%dT%H:%M:%S", "%d.%m.%Y %H", "%Y%m%d%H%M"]),
    parts=st.lists(st.text(alphabet="0123456789 ", min_size=1, max_size=5), min_size=3,
                   max_size=6),
    separators=st.lists(st.sampled_from(["/", "-", ".", "", " ", ":", "T", "  "]),
                        min_size=5, max_size=5),
)
def test_the_plain_date_shortcut_agrees_with_strptime(form, parts, separators):
    # Given any cells shaped like a date, or a date and time, valid or not
    value = "".join(part + separator for part, separator in zip(parts, separators, strict=False)
                    ).rstrip()
    kind = "datetime" if "%H" in form else "date"
    try:
        parsed = datetime.strptime(value, form)
        judged = parsed.isoformat() if kind == "datetime" else parsed.date().isoformat()
    except ValueError:
        judged = None
    # Then the field, which reads plain formats without strptime, stores what strptime reads
    convert = converter({"type": kind, "format": form})
    assert_stores(convert, value, judged)
    assert _quick_moment(form) is not None


def test_an_enum_of_many_values_reads_them_by_lookup_and_rejects_in_short():
    # Given an enum of 200,000 values, each with a spelling of its own in the mapping (a
    # search of lists would take hours to check it: the test's timeout fails it)
    values = [f"k{n}" for n in range(200_000)]
    spec = {"column": "Kind", "type": "enum", "values": values,
            "mapping": {f"Kind {n}": f"k{n}" for n in range(200_000)}}
    convert = converter(spec)
    # Then any value or spelling is read
    assert (convert("k199999"), convert(" KIND 7 ")) == ("k199999", "k7")
    # And a cell that is none of them is rejected in a few words, the values left out
    with pytest.raises(FieldError, match=r"^'k-1' is not one of the 200000 allowed values$"):
        convert("k-1")
    with pytest.raises(ValueError, match=r"^mapping 'Dr' -> 'dr': 'dr' is not one of the "
                                         r"200000 allowed values$"):
        converter({**spec, "mapping": {"Dr": "dr"}})


@pytest.mark.parametrize(("count", "reason"), [
    (10, "'x' is not one of: v0, v1, v2, v3, v4, v5, v6, v7, v8, v9"),
    (11, "'x' is not one of the 11 allowed values"),
    (250, "'x' is not one of the 250 allowed values"),
])
def test_an_enum_s_reason_lists_its_values_only_when_they_are_few(count, reason):
    spec = {"column": "Kind", "type": "enum", "values": [f"v{n}" for n in range(count)]}
    with pytest.raises(FieldError) as error:
        converter(spec)("x")
    assert str(error.value) == reason
