"""The contract between agent and worker.

JSON Schemas of the account, the template and the file event, the names both sides agree on
(queue, actor), the spool's layout (spool.py) and the settings (settings.py). Agent and worker
import this package, never each other; the program that runs them is `dropimport/`.
"""

import json
import zoneinfo
from functools import cache
from importlib import resources

import jsonschema
from croniter import croniter

__all__ = ["ACTOR", "KEY_TYPES", "MAX_COLUMNS", "QUEUE", "SchemaError",
           "check_template", "validate"]

#: The RabbitMQ queue the agent publishes file events to (dramatiq adds `.DQ` and `.XQ`).
QUEUE = "contact-imports"
#: The dramatiq actor that imports one file event.
ACTOR = "import_file"


class SchemaError(ValueError):
    """A document does not follow its schema; the message names the JSON path and the problem."""


@cache
def _schema(name):
    return json.loads(resources.files(__name__).joinpath(f"{name}.schema.json").read_text("utf-8"))


@cache
def _validator(name):
    return jsonschema.Draft202012Validator(
        _schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


#: The most columns a template may name, and so a file's header may have.
MAX_COLUMNS = _schema("template")["properties"]["columns"]["maxItems"]
#: The standard keys, each stored in a column of its own, and the field types each may have.
KEY_TYPES = {"email": ("email",), "external_id": ("text", "integer"), "phone": ("phone",)}


_by_relevance = jsonschema.exceptions.by_relevance()


def _relevance(error):
    # An unknown option is reported only when nothing more precise went wrong: a bad value
    # inside a conditional block also makes its properties "unevaluated".
    return (error.validator != "unevaluatedProperties", _by_relevance(error))


def _where(path):
    return ".".join(str(part) for part in path) or "(top level)"


def validate(name, document):
    """Validate `document` against `schemas/<name>.schema.json`, raising SchemaError."""
    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(document), key=_relevance)
    if error is not None:
        raise SchemaError(f"{_where(error.absolute_path)}: {error.message}")
    return document


def check_template(template):
    """Validate a template: its schema, then the rules a schema cannot say."""
    validate("template", template)
    columns = template["columns"]
    for name, field in template["fields"].items():
        kind, allowed = field.get("type", "text"), KEY_TYPES.get(name)
        if allowed and kind not in allowed:
            raise SchemaError(f"fields.{name}.type: the standard key {name} is of type "
                              f"{' or '.join(allowed)}, not {kind!r}")
        column = field["column"]
        if isinstance(column, int) and column > len(columns):
            raise SchemaError(
                f"fields.{name}.column: {column} is beyond the {len(columns)} columns"
            )
        if isinstance(column, str) and column not in columns:
            raise SchemaError(
                f"fields.{name}.column: {column!r} is not one of the columns {columns}"
            )
    match_on = template.get("match_on", "email")
    if match_on not in template["fields"]:
        raise SchemaError(f"match_on: field {match_on!r} is not defined in fields")
    _check_expected(template.get("expected"))
    return template


def _check_expected(expected):
    if expected is None:
        return
    cron = expected["cron"]
    if not (len(cron.split()) == 5 or cron.startswith("@")) or not croniter.is_valid(cron):
        raise SchemaError(
            f"expected.cron: {cron!r} is not a five-field cron expression such as '0 6 * * *'")
    timezone = expected.get("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SchemaError(
            f"expected.timezone: {timezone!r} is not a time zone such as 'Europe/Paris'"
        ) from None
