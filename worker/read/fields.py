"""Field types: each turns a cell into the value stored for a contact, or says why it cannot."""

import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeVar

import email_validator
import phonenumbers
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

#: What the conversions depend on besides this code: a new release may judge a cell otherwise.
LIBRARIES = (("phonenumbers", phonenumbers.__version__),
             ("email-validator", email_validator.__version__))


class FieldError(ValueError):
    """A cell that is not a valid value of its field's type."""


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
    return build(spec)


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
        if _plain_email(lowered):
            return lowered
        try:
            checked = validate_email(value, check_deliverability=False)
        except EmailNotValidError as error:
            raise FieldError(f"invalid e-mail {value!r}: {error}") from None
        return checked.normalized.lower()

    # The stored form of nearly every address (template._ask): an attribute of the function,
    # which its type does not declare (read with getattr).
    email.lookup = str.lower  # type: ignore[attr-defined]
    return email


# The common case, checked at a tenth of email-validator's cost: a plain ASCII address
# (dot-atom local part of at most 64 characters, letters-digits-hyphens domain, alphabetic
# top-level domain, no special-use domain). Anything else, and every refusal, goes to
# email-validator, which stays the judge: a test checks that it accepts, as they are, the
# addresses this pattern lets through. One pattern: its checks cost no Python step.
_PLAIN_EMAIL = re.compile(
    r"(?=[^@]{1,64}@)[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    # "--" (as in xn-- labels, reserved by IDNA at the third character) goes to the library.
    r"@(?!.*--)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
    + "".join(rf"(?<![@.]{re.escape(name)})" for name in SPECIAL_USE_DOMAIN_NAMES)
)


def _plain_email(address: str) -> bool:
    return len(address) <= 254 and _PLAIN_EMAIL.fullmatch(address) is not None


_LETTER = re.compile(r"[^\W\d_]")


def _phone(spec: dict[str, Any]) -> Callable[[str], str | None]:
    """E.164 (`+33612345678`); national numbers are read in `region`, if given."""
    region = spec.get("region")
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {region!r}")
    empty_if_invalid = spec.get("invalid", "reject_row") == "empty"
    where = f"region {region}" if region else "no region, so it must start with +"

    quick = _quick_phone(region) if region else None

    def phone(value: str) -> str | None:
        if quick is not None and (found := quick(value)):
            return found
        # phonenumbers reads letters as a keypad spelling (1-800-FLOWERS) and E.164 would drop
        # an extension: in a contacts file both are typing errors, not numbers to call.
        if not _LETTER.search(value):
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
_GROUPED_DIGITS = re.compile(r"\+?[0-9]+(?:[ .-]?[0-9]+)*")
# The types a valid number matches one of, the common ones first.
_TYPES = ("mobile", "fixed_line", "premium_rate", "toll_free", "shared_cost", "voip",
          "personal_number", "pager", "uan", "voicemail")


def _quick_phone(region: str) -> Callable[[str], str | None] | None:
    """E.164 of a plain valid number of `region`, or None: ask phonenumbers, the judge.

    It only answers where it gives phonenumbers' answer by construction (a test checks it):
    a country code of one region, a national prefix that is a plain digit string, and a
    number that is valid by the region's own patterns, as phonenumbers' is_valid_number
    checks it. Anything else (another shape, a prefix that could be an international or a
    country code, a leading zero kept in the national number) goes to phonenumbers.
    """
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    # A supported region (_phone checks it) has its metadata, and its country code.
    assert metadata is not None and metadata.country_code is not None
    code = str(metadata.country_code)
    prefix = metadata.national_prefix or ""
    if (len(phonenumbers.COUNTRY_CODE_TO_REGION_CODE[metadata.country_code]) != 1
            or metadata.national_prefix_transform_rule
            or (metadata.national_prefix_for_parsing or "") != prefix
            or not (prefix == "" or prefix.isdigit())):
        return None
    international = re.compile(metadata.international_prefix or "(?!)")

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
    valid = re.compile(f"(?={general}\\Z)(?:{'|'.join(types)})")

    def quick(value: str) -> str | None:
        if not _GROUPED_DIGITS.fullmatch(value):
            return None
        digits = value.replace(" ", "").replace(".", "").replace("-", "")  # 4x translate's speed
        if digits[0] == "+":
            if not digits.startswith(code, 1):
                return None
            national = digits[1 + len(code):]
        elif international.match(digits) or digits.startswith(code):
            return None
        elif digits.startswith(prefix):
            national = digits[len(prefix):]
        else:
            national = digits
        if (national[:1] in ("", "0") or (prefix and national.startswith(prefix))
                or not valid.fullmatch(national)):
            return None
        return f"+{code}{national}"

    return quick


# Any format that reads back the date of this moment holds a full date; one without a year
# would store 1900, one with a bad directive would reject every row rather than the template.
_PROBE = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)


def _moment(spec: dict[str, Any], kind: str, store: Callable[[datetime], str]
            ) -> Callable[[str], str]:
    """`store` applied to the cell read with strptime by the spec's `format`."""
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

    return moment


def _date(spec: dict[str, Any]) -> Callable[[str], str]:
    """ISO `YYYY-MM-DD`."""
    slow = _moment(spec, "a date", lambda moment: moment.date().isoformat())
    quick = _quick_date(spec["format"])
    if quick is None:
        return slow

    # Dates repeat (birth dates, sign-up days): their readings are kept, a bounded number.
    @lru_cache(maxsize=1 << 16)
    def day(value: str) -> str:
        found = quick.fullmatch(value)
        if found:
            try:
                return date(int(found["Y"]), int(found["m"]), int(found["d"])).isoformat()
            except ValueError:
                pass
        return slow(value)  # the judge, and its reason

    return day


# strptime's own patterns for these directives: a format made of them and of separators is
# read by one regular expression, at a tenth of strptime's cost (a test checks they agree).
_DATE_PARTS = {"%d": r"(?P<d>3[0-1]|[1-2]\d|0[1-9]|[1-9]| [1-9])",
               "%m": r"(?P<m>1[0-2]|0[1-9]|[1-9])", "%Y": r"(?P<Y>\d\d\d\d)"}
_DATE_FORMAT = re.compile(r"(?:%[dmY]|[/.-])+")


def _quick_date(form: str) -> re.Pattern[str] | None:
    """The regular expression that reads the plain date format `form`, or None."""
    directives = re.findall(r"%.", form)
    if not _DATE_FORMAT.fullmatch(form) or sorted(directives) != ["%Y", "%d", "%m"]:
        return None
    return re.compile(re.sub(r"%[dmY]|[.]", lambda m: _DATE_PARTS.get(m[0], r"\."), form))


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
