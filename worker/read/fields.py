"""Field types: each turns a cell into the value stored for a contact, or says why it cannot."""

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any, NamedTuple, TypeVar

import email_validator
import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

#: What the conversions depend on besides this code: a new release may judge a cell otherwise.
LIBRARIES = (("phonenumbers", phonenumbers.__version__),
             ("email-validator", email_validator.__version__))


class FieldError(ValueError):
    """A cell that is not a valid value of its field's type."""


#: Characters that make a spreadsheet read a cell as a formula (CSV injection): our reports
#: and exports write a quote before a cell starting with one (report.neutralised).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def converter(spec: dict[str, Any]) -> Callable[[str], object]:
    """The function that turns a cell into the stored value of the field described by `spec`.

    `spec` is checked here, once per import; the function returned is called for every
    non-empty cell and raises FieldError with a reason meant for the customer.
    """
    kind = spec.get("type", "text")
    try:
        build = _BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown field type {kind!r}") from None
    convert = build(spec)
    return _unquoted(convert) if spec.get("neutralised") else convert


def _unquoted(convert: Callable[[str], object]) -> Callable[[str], object]:
    """A converter of cells written safe for a spreadsheet (our exports): the quote before
    what reads as a formula is dropped, so the value is read back as it was."""

    def unquoted(value: str) -> object:
        if value.startswith("'") and value[1:2] and value[1] in FORMULA_START:
            value = value[1:]
        return convert(value)

    return unquoted


def _text(spec: dict[str, Any]) -> Callable[[str], str]:
    """Text as it is, no longer than `max_length` characters if given."""
    limit = spec.get("max_length")
    if limit is None:
        return str  # a cell is already a str, so str() stores it as it is

    def text(value: str) -> str:
        if len(value) > limit:
            raise FieldError(f"text of {len(value)} characters is longer than max_length {limit}")
        return value

    return text


def _email(spec: dict[str, Any]) -> Callable[[str], str]:
    """The normalized address, lower-cased so that `Jo@X.com` and `jo@x.com` are one contact.

    Internationalised domains are stored in their Unicode form: email-validator turns the
    punycode `xn--` spelling into it too, so both spellings are one contact.
    """

    def email(value: str) -> str:
        lowered = value.lower()
        latin = value.isascii() or _LATIN_TEXT.fullmatch(value)
        if latin and _plain_email(lowered):
            return lowered
        if latin and (other := _other_domain(value)):
            return other
        try:
            checked = validate_email(value, check_deliverability=False)
        except EmailNotValidError as error:
            raise FieldError(f"invalid e-mail {value!r}: {error}") from None
        return checked.normalized.lower()

    # The stored form of nearly every address (template._ask): an attribute of the function,
    # which its type does not declare (read with getattr).
    email.lookup = str.lower  # type: ignore[attr-defined]
    return email


# The common case, checked at a tenth of email-validator's cost: a plain address (dot-atom
# local part of at most 64 characters, ASCII or Latin letters such as `chloé.thomas`;
# letters-digits-hyphens ASCII domain, alphabetic top-level domain, no special-use domain).
# Anything else, and every refusal, goes to email-validator, which stays the judge: a test
# checks that it accepts, as they are, the addresses this pattern lets through. One pattern:
# its checks cost no Python step.
# The Latin letters of Latin-1 and Latin Extended-A and B (no × nor ÷): each a letter,
# which email-validator allows in a local part, and each its own NFC form, which it stores.
_LATIN = "\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_LATIN_TEXT = re.compile(f"[\x00-\x7f{_LATIN}]*")  # the original address: no Kelvin sign
_ATOM = f"[a-z0-9!#$%&'*+/=?^_`{{|}}~{_LATIN}-]+"
_PLAIN_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_PLAIN_EMAIL = re.compile(
    rf"(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*"
    # "--" (as in xn-- labels, reserved by IDNA at the third character) goes to the library.
    r"@(?!.*--)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
    + "".join(rf"(?<![@.]{re.escape(name)})" for name in SPECIAL_USE_DOMAIN_NAMES)
)


def _other_domain(address: str) -> str | None:
    """The stored form of a plain local part at a domain that is not plain ASCII (`café.fr`,
    `xn--caf-dma.fr`), which email-validator reads once per domain (`_domain`); None if
    it is not one, or too long, or its domain is refused: ask email-validator."""
    local, at, domain = address.rpartition("@")
    if not (at and 0 < len(local) <= 64 and _PLAIN_LOCAL.fullmatch(local.lower())):
        return None
    names = _domain(domain)
    if names is None:
        return None
    normalized, ascii_domain = names
    # email-validator's limit, in UTF-8 bytes, on each spelling of the address
    if any(len(spelling.encode()) > 254 for spelling in (
            address, f"{local}@{normalized}", f"{local}@{ascii_domain}")):
        return None
    return f"{local}@{normalized}".lower()


@lru_cache(maxsize=1 << 12)
def _domain(domain: str) -> tuple[str, str] | None:
    """The normalized and ASCII spellings of the domain of an address, as email-validator
    reads it whatever the local part, or None if it refuses it."""
    try:
        checked = validate_email(f"x@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.domain, checked.ascii_domain


def _plain_email(address: str) -> bool:
    # email-validator counts an address's length in UTF-8 bytes
    return (len(address) if address.isascii() else len(address.encode())) <= 254 and (
        _PLAIN_EMAIL.fullmatch(address) is not None)


_LETTER = re.compile(r"[^\W\d_]")


def _phone(spec: dict[str, Any]) -> Callable[[str], str | None]:
    """E.164 (`+33612345678`); national numbers are read in `region`, if given."""
    region = spec.get("region")
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {region!r}")
    empty_if_invalid = spec.get("invalid", "reject_row") == "empty"
    where = f"region {region}" if region else "no region, so it must start with +"

    quick = _quick_phone(region)

    def phone(value: str) -> str | None:
        found = quick(value)
        if found is not None and found is not INVALID:
            return found
        # phonenumbers reads letters as a keypad spelling (1-800-FLOWERS) and E.164 would drop
        # an extension: in a contacts file both are typing errors, not numbers to call.
        if found is None and not _LETTER.search(value):
            try:
                number = phonenumbers.parse(value, region)
            except phonenumbers.NumberParseException:
                number = None
            if number is not None and not number.extension and phonenumbers.is_valid_number(number):
                return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if empty_if_invalid:
            return None
        raise FieldError(f"invalid phone number {value!r} ({where})")

    return phone


# The common shapes of a valid number, read at a tenth of phonenumbers' cost: digits grouped
# by spaces, dots or hyphens, national (`06 12 34 56 78`) or international (`+33 6 12...`).
_PHONE_SHAPE = re.compile(
    r"(?:\(\+[0-9]{1,3}\) ?|\+[0-9]{1,3} ?\(0\) ?|\+)?[0-9]+(?:[ .-]?[0-9]+)*")
# The types a valid number matches one of, the common ones first.
_TYPES = ("mobile", "fixed_line", "premium_rate", "toll_free", "shared_cost", "voip",
          "personal_number", "pager", "uan", "voicemail")


#: What `_quick_phone` answers for a number phonenumbers would refuse.
INVALID = "invalid"


def _quick_phone(region: str | None) -> Callable[[str], str | None]:
    """The function: a number -> its E.164, INVALID, or None: ask phonenumbers, the judge.

    It only answers where it gives phonenumbers' answer by construction (a test checks it):
    digits grouped by spaces, dots or hyphens, after a country code (`+33`, `(+33)`, `0033`
    where the region dials 00 abroad, `+33 (0)`) of one region or national in `region`,
    whose national prefix is a plain digit string; the national number, its prefix dropped
    (`+33 06...`: phonenumbers drops it when what follows is a possible number), starting
    with no zero: one that phonenumbers checks by the region's own patterns (`_numbering`).
    Anything else (another shape, a country of several regions, a region that reads its
    numbers otherwise) goes to phonenumbers.
    """
    home = _numbering(region) if region else None
    international = re.compile(home.international if home else "(?!)")

    def quick(value: str) -> str | None:
        if not _PHONE_SHAPE.fullmatch(value):
            return None
        digits = value.replace(" ", "").replace(".", "").replace("-", "")  # 4x translate's speed
        if "(" in digits:
            digits = digits.replace("(", "").replace(")", "")
        numbering: _Numbering | None
        if digits[0] == "+":
            numbering, national = _calling(digits[1:])
        elif home is None or digits.startswith(home.code):
            return None  # a country code without its +, or no region to read it in
        elif idd := international.match(digits):
            if digits[idd.end():idd.end() + 1] == "0":
                return None  # which phonenumbers reads as no international prefix
            numbering, national = _calling(digits[idd.end():])
        else:
            numbering, national = home, digits
        if numbering is None:
            return None
        prefix = numbering.prefix
        stripped = bool(prefix) and national.startswith(prefix)
        if stripped:
            national = national[len(prefix):]
        if national[:1] in ("", "0") or (prefix and national.startswith(prefix)):
            return None
        if numbering.valid.fullmatch(national):
            return f"+{numbering.code}{national}"
        # phonenumbers keeps a national prefix when what follows is no possible number
        if stripped and not (numbering.possible.fullmatch(national)
                             and len(national) not in numbering.local_only):
            return None
        return INVALID

    return quick


class _Numbering(NamedTuple):
    """What `_quick_phone` needs of a region's numbering plan."""

    code: str  # the country code
    prefix: str  # the national prefix, digits or ""
    international: str  # the pattern of its international prefix
    valid: re.Pattern[str]  # a valid national number
    possible: re.Pattern[str]  # a national number of the region's general description
    local_only: frozenset[int]  # the lengths of numbers only dialled locally


def _calling(digits: str) -> tuple[_Numbering | None, str]:
    """The numbering of the country code `digits` start with, if it is of one region, and
    the digits after it."""
    for size in (1, 2, 3):  # as phonenumbers reads a country code: the shortest known
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(digits[:size] or 0))
        if regions is not None:
            return (_numbering(regions[0]) if len(regions) == 1 else None), digits[size:]
    return None, digits


@cache
def _numbering(region: str) -> _Numbering | None:
    """The numbering plan of `region`, or None if phonenumbers reads its numbers otherwise
    than `_quick_phone` does: a country code of several regions, a national prefix that is
    no plain digit string, or rewritten when read."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.country_code is None:
        return None  # a non-geographical entity (`001`)
    prefix = metadata.national_prefix or ""
    if (len(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[metadata.country_code]) != 1
            or metadata.national_prefix_transform_rule
            or (metadata.national_prefix_for_parsing or "") != prefix
            or not (prefix == "" or prefix.isdigit())):
        return None

    def desc(name: str) -> str | None:
        """The pattern of what the description `name` matches, at one of its lengths."""
        found = getattr(metadata, name)
        if found is None or not found.national_number_pattern:
            return None
        lengths = "|".join(f".{{{size}}}" for size in found.possible_length)
        return (f"(?=(?:{lengths})\\Z)" if lengths else "") + (
            f"(?:{found.national_number_pattern})")

    general = desc("general_desc")
    types = [d for d in map(desc, _TYPES) if d is not None]
    if general is None or not types:
        return None
    # As phonenumbers checks a number: the general description, then each type's (by its
    # lengths when it has some, then its pattern), in one pattern.
    return _Numbering(str(metadata.country_code), prefix, metadata.international_prefix or "(?!)",
                      re.compile(f"(?={general}\\Z)(?:{'|'.join(types)})"),
                      re.compile(general),
                      # general_desc is set: `general` is its pattern
                      frozenset(metadata.general_desc.possible_length_local_only  # type: ignore[union-attr]
                                or ()))


# Any format that reads back the date of this moment holds a full date; one without a year
# would store 1900, one with a bad directive would reject every row rather than the template.
_PROBE = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)


def _moment(spec: dict[str, Any], kind: str, store: Callable[[datetime], str]
            ) -> Callable[[str], str]:
    """`store` applied to the cell read with strptime by the spec's `format`; a plain
    format's cells are read by one regular expression first (`_quick_moment`)."""
    form = spec["format"]
    try:
        readable = datetime.strptime(_PROBE.strftime(form), form).date() == _PROBE.date()
    except ValueError:
        readable = False
    if not readable:
        raise ValueError(f"format {form!r} does not read a full date (day, month and year)")

    def moment(value: str) -> str:
        try:
            parsed = datetime.strptime(value, form)
        except ValueError:
            raise FieldError(f"{value!r} is not {kind} in the format {form}") from None
        return store(parsed)

    quick = _quick_moment(form)
    if quick is None:
        return moment
    parts = tuple(part for part in "YmdHMS" if part in quick.groupindex)  # datetime's order

    def plain(value: str) -> str:
        found = quick.match(value)
        # As strptime: the first match, which must end where the value ends.
        if found is not None and found.end() == len(value):
            try:
                # year, month, day, then hours, minutes, seconds (_quick_moment)
                return store(datetime(*map(int, found.group(*parts))))  # type: ignore[arg-type]
            except ValueError:  # no such day
                pass
        return moment(value)  # the judge, and its reason

    return plain


def _date(spec: dict[str, Any]) -> Callable[[str], str]:
    """ISO `YYYY-MM-DD`."""
    # Dates repeat (birth dates, sign-up days): their readings are kept, a bounded number.
    return lru_cache(maxsize=1 << 16)(
        _moment(spec, "a date", lambda moment: moment.date().isoformat()))


# strptime's own patterns for these directives: a format made of them and of separators is
# read by one regular expression, at a tenth of strptime's cost (a test checks they agree).
_MOMENT_PARTS = {"%d": r"(?P<d>3[0-1]|[1-2]\d|0[1-9]|[1-9]| [1-9])",
                 "%m": r"(?P<m>1[0-2]|0[1-9]|[1-9])", "%Y": r"(?P<Y>\d\d\d\d)",
                 "%H": r"(?P<H>2[0-3]|[0-1]\d|\d)", "%M": r"(?P<M>[0-5]\d|\d)",
                 "%S": r"(?P<S>6[0-1]|[0-5]\d|\d)"}
_MOMENT_DIRECTIVES = [set("Ymd"), set("YmdH"), set("YmdHM"), set("YmdHMS")]
_MOMENT_FORMAT = re.compile(r"(?:%[dmYHMS]|[/.:T-]| (?! ))+")


def _quick_moment(form: str) -> re.Pattern[str] | None:
    """The regular expression that reads the plain date or time format `form`, or None:
    a day, a month and a year, hours, minutes and seconds at most once each, between
    separators (strptime reads a space as any run of spaces: one reads one here, the
    others go to strptime)."""
    letters = [directive[1] for directive in re.findall(r"%.", form)]
    # A day, a month and a year, then hours, minutes and seconds, the latter in this order:
    # datetime's own arguments, each at most once.
    if (not _MOMENT_FORMAT.fullmatch(form) or len(set(letters)) != len(letters)
            or set(letters) not in _MOMENT_DIRECTIVES):
        return None
    return re.compile(re.sub(r"%[dmYHMS]|[.]", lambda m: _MOMENT_PARTS.get(m[0], r"\."), form))


def _datetime(spec: dict[str, Any]) -> Callable[[str], str]:
    """ISO `YYYY-MM-DDTHH:MM:SS`, with the offset when the format reads one (`%z`)."""
    return _moment(spec, "a date and time", datetime.isoformat)


_TRUE = ("1", "true", "oui", "yes", "x", "vrai", "y", "o")
_FALSE = ("0", "false", "non", "no", "faux", "n")


def _boolean(spec: dict[str, Any]) -> Callable[[str], bool]:
    """True or False, by the spec's vocabularies (else the default ones), ignoring case.

    Giving `true_values` alone leaves the false vocabulary empty: any other value is an
    error. A column that is "x" or empty is a template with `"default": "0"`, since an empty
    cell never reaches here.
    """
    true_words = spec.get("true_values", _TRUE)
    false_words = spec.get("false_values", () if "true_values" in spec else _FALSE)
    expected = "; ".join(
        f"{name}: {', '.join(words)}"
        for name, words in (("true", true_words), ("false", false_words)) if words
    )
    pairs = [(word, True) for word in true_words] + [(word, False) for word in false_words]
    return _lookup(pairs, f"a boolean ({expected})")


#: The most values a reason lists: a reason is written for every cell it rejects.
LISTED = 10


def _enum(spec: dict[str, Any]) -> Callable[[str], str]:
    """The one of `values` that the cell names, itself or by a key of `mapping`."""
    values = spec["values"]
    mapping = spec.get("mapping", {})
    expected = ("one of: " + ", ".join(values) if len(values) <= LISTED
                else f"one of the {len(values)} allowed values")
    allowed = set(values)
    for raw, value in mapping.items():
        if value not in allowed:
            raise ValueError(f"mapping {raw!r} -> {value!r}: {value!r} is not {expected}")
    pairs = [(value, value) for value in values] + list(mapping.items())
    return _lookup(pairs, expected)


_Meaning = TypeVar("_Meaning")  # what a word of a vocabulary stands for


def _lookup(pairs: Iterable[tuple[str, _Meaning]], expected: str) -> Callable[[str], _Meaning]:
    """The meaning of a word of `pairs` (word, meaning), case and surrounding spaces aside."""
    meanings: dict[str, _Meaning] = {}
    for word, meaning in pairs:
        key = word.strip().casefold()
        if meanings.setdefault(key, meaning) != meaning:
            raise ValueError(f"{word!r} means both {meanings[key]!r} and {meaning!r}")

    def lookup(value: str) -> _Meaning:
        try:
            return meanings[value.strip().casefold()]
        except KeyError:
            raise FieldError(f"{value!r} is not {expected}") from None

    return lookup


# French Excel groups thousands with a space, a no-break space or a narrow no-break space.
_SPACES = " \u00a0\u202f"
_DIGITS = rf"(?:[0-9]{{1,3}}(?:[{_SPACES}][0-9]{{3}})+|[0-9]+)"
_INTEGER = re.compile(rf"[+-]?{_DIGITS}")
_NO_SPACES = str.maketrans(dict.fromkeys(_SPACES))


def _integer(spec: dict[str, Any]) -> Callable[[str], int]:
    """An int, from digits with an optional sign and thousands grouped by spaces."""

    def integer(value: str) -> int:
        # int() alone would also take `1_000`, ` 12` and other digits than ASCII ones.
        if _INTEGER.fullmatch(value):
            try:
                return int(value.translate(_NO_SPACES))
            except ValueError:  # beyond the 4300 digits Python converts
                pass
        raise FieldError(f"{value!r} is not an integer")

    return integer


def _decimal(spec: dict[str, Any]) -> Callable[[str], str]:
    """The number as a string in dot notation, keeping its scale: `1 234,50` -> `"1234.50"`."""
    separator = spec.get("decimal_separator", ".")
    fraction = rf"{re.escape(separator)}[0-9]+"
    pattern = re.compile(rf"[+-]?(?:{_DIGITS}(?:{fraction})?|{fraction})")
    canonical = str.maketrans({separator: ".", **dict.fromkeys(_SPACES)})

    def decimal(value: str) -> str:
        # The pattern leaves out NaN, Infinity, exponents and the other separator, which
        # Decimal would take or we would have to guess about.
        if not pattern.fullmatch(value):
            raise FieldError(f"{value!r} is not a decimal number with {separator!r} as separator")
        number = Decimal(value.translate(canonical))
        return format(number.copy_abs() if number.is_zero() else number, "f")  # no "-0.0"

    return decimal


_BUILDERS = {
    "text": _text,
    "email": _email,
    "phone": _phone,
    "date": _date,
    "datetime": _datetime,
    "boolean": _boolean,
    "integer": _integer,
    "decimal": _decimal,
    "enum": _enum,
}
