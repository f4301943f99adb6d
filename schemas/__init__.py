"""The contract between agent and worker.

JSON Schemas of the account, the template and the file event, the names both sides agree on
(queue, actor), the spool's layout (spool.py) and the settings (settings.py). Agent and worker
import this package, never each other; the program that runs them is `dropimport/`.
"""

import json
import zoneinfo
from collections.abc import Iterable, Mapping
from copy import deepcopy
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, NotRequired, TypedDict, TypeVar

import jsonschema
from croniter import croniter

__all__ = ["ACTOR", "EXPORT_ACTOR", "EXPORT_QUEUE", "KEY_TYPES", "MAX_COLUMNS", "QUEUE",
           "ExportEvent", "FileEvent", "SchemaError", "Template", "check_template",
           "export_event", "template_with_defaults", "validate"]

#: The RabbitMQ queue the agent publishes file events to (dramatiq adds `.DQ` and `.XQ`).
QUEUE = "contact-imports"
#: The dramatiq actor that imports one file event.
ACTOR = "import_file"
#: The queue of export runs (export-event.schema.json), and the actor that runs one.
EXPORT_QUEUE = "contact-exports"
EXPORT_ACTOR = "export_contacts"

#: A JSON document checked by `validate`, returned as it was given.
_Document = TypeVar("_Document", bound=Mapping[str, Any])


class FileEvent(TypedDict):
    """The message the agent publishes for each spooled file (file-event.schema.json)."""

    import_id: str
    account: str
    file: str
    spool_path: str  # relative to the home
    size: int
    sha256: str
    received_at: str  # ISO 8601, UTC
    expected: NotRequired[dict[str, Any]]  # what a completion marker announced
    preview: NotRequired[bool]  # uploaded into dryrun/: compared, nothing changed


class ExportEvent(TypedDict):
    """One run of an account's export (export-event.schema.json)."""

    run_id: str
    account: str
    export: str
    trigger: str  # schedule or manual
    planned_for: str  # ISO 8601, UTC


def export_event(account: str, export: str, planned_for: datetime,
                 manual: str | None = None) -> ExportEvent:
    """The run of `export` planned for `planned_for` (an aware datetime): scheduled, whose id
    is its time, or asked for by an operator, whose id is `manual` (unique)."""
    at = planned_for.astimezone(UTC)
    run = f"manual-{manual}" if manual else f"{at:%Y%m%dT%H%M%SZ}"
    return validate("export-event", ExportEvent(
        run_id=f"{account}.{export}.{run}", account=account, export=export,
        trigger="manual" if manual else "schedule",
        planned_for=at.isoformat(timespec="seconds")))


class Template(TypedDict):
    """An import template (template.schema.json), its defaults applied
    (`template_with_defaults`): every key but `expected` and `completion` is there."""

    file: str
    columns: list[str]
    format: dict[str, str]  # encoding, delimiter
    header: dict[str, str] | bool  # False: no header line; else match, extra_columns
    empty_file: str
    fields: dict[str, dict[str, Any]]
    match_on: str
    mode: str
    absent: str  # mirror mode: unsubscribe or delete
    hold: dict[str, int | str]  # limit name -> a number of contacts or "P%"
    empty_cells: str
    duplicates: str
    errors: dict[str, Any]
    max_shrink: str
    compression: str  # auto, none (dropimport/packaging.py)
    encryption: str  # none, openpgp
    expected: NotRequired[dict[str, Any]]
    completion: NotRequired[dict[str, Any]]


class SchemaError(ValueError):
    """A document does not follow its schema; the message names the JSON path and the problem."""


@cache
def _schema(name: str) -> dict[str, Any]:
    return json.loads(resources.files(__name__).joinpath(f"{name}.schema.json").read_text("utf-8"))


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        _schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


#: The most columns a template may name, and so a file's header may have.
MAX_COLUMNS = _schema("template")["properties"]["columns"]["maxItems"]
#: The standard keys, each stored in a column of its own, and the field types each may have.
KEY_TYPES = {"email": ("email",), "external_id": ("text", "integer"), "phone": ("phone",)}


@cache
def _template_defaults() -> dict[str, Any]:
    properties = _schema("template")["properties"]
    defaults = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
    for name in ("format", "header"):
        options = next(s for s in properties[name].get("oneOf", [properties[name]])
                       if s.get("type") == "object")["properties"]
        defaults[name] = {option: spec["default"] for option, spec in options.items()}
    return {**defaults, "errors": {}}


def template_with_defaults(template: dict[str, Any]) -> Template:
    """`template` with the schema's default for each option it leaves out, so that the code
    reading it never repeats them (a template without a header line keeps `header: false`)."""
    defaults = deepcopy(_template_defaults())
    applied = {**defaults, **template}
    for name in ("format", "header"):
        if isinstance(template.get(name), dict):
            applied[name] = {**defaults[name], **template[name]}
    return applied  # type: ignore[return-value]


_by_relevance = jsonschema.exceptions.by_relevance()


def _relevance(error: jsonschema.ValidationError) -> tuple[bool, tuple[Any, ...]]:
    # An unknown option is reported only when nothing more precise went wrong: a bad value
    # inside a conditional block also makes its properties "unevaluated".
    return (error.validator != "unevaluatedProperties", _by_relevance(error))


def _where(path: Iterable[str | int]) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def validate(name: str, document: _Document) -> _Document:
    """Validate `document` against `schemas/<name>.schema.json`, raising SchemaError."""
    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(document), key=_relevance)
    if error is not None:
        raise SchemaError(f"{_where(error.absolute_path)}: {error.message}")
    return document


def check_template(template: dict[str, Any]) -> dict[str, Any]:
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
    match_on = template_with_defaults(template)["match_on"]
    if match_on not in template["fields"]:
        raise SchemaError(f"match_on: field {match_on!r} is not defined in fields")
    _check_expected(template.get("expected"))
    return template


def _check_expected(expected: dict[str, Any] | None) -> None:
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
