"""Field types: each turns a cell into a stored value or raises FieldError with the reason."""

from email_validator import EmailNotValidError, validate_email


class FieldError(ValueError):
    """A cell that is not a valid value of its field's type."""


def text(value):
    return value.strip()


def email(value):
    """Trimmed and lower-cased, so that `Jo@X.com` and `jo@x.com ` are one contact."""
    value = value.strip()
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise FieldError(f"invalid e-mail {value!r}: {error}") from None
    return checked.normalized.lower()


TYPES = {"text": text, "email": email}
