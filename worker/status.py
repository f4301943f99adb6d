"""`dropimport status`: the queues, the imports under way, the failures, the late files.

`build` and `render` are pure: they shape facts gathered elsewhere. The facts about the queues
come from RabbitMQ's management HTTP API when it answers (ready and unacknowledged messages,
consumers), else from a passive declare over AMQP (ready messages and consumers only). What
could not be read is named in the report, never shown as empty.
"""

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from dramatiq.common import dq_name, xq_name

from schemas import EXPORT_QUEUE, QUEUE
from schemas.settings import redact

from .notify import QUEUE as NOTIFICATIONS
from .record import ImportRecord

if TYPE_CHECKING:
    from .overdue import Late

#: The imports' queue, the notifications' and the exports', each with dramatiq's delay queue
#: (retries waiting for their time) and its dead letters (messages given up on, kept 7 days).
QUEUES = tuple(name for queue in (QUEUE, NOTIFICATIONS, EXPORT_QUEUE)
               for name in (queue, dq_name(queue), xq_name(queue)))
MANAGEMENT_PORT = 15672
#: How far back failed imports are shown.
FAILED_WINDOW = timedelta(hours=24)
TIMEOUT = 5

#: Each queue's facts (ready, unacked, consumers), None for a queue not declared yet.
Depths = dict[str, dict[str, Any] | None]


class QueuesUnknown(Exception):
    """Neither the management API nor AMQP could tell the queues' depth."""


# --- the queues (I/O)


def management_url(broker_url: str, api_url: str | None = None) -> str | None:
    """The management API's base URL: `api_url`, else the broker's host on port 15672; with
    the broker's user unless `api_url` names one. None when `api_url` is `off`."""
    if api_url == "off":
        return None
    broker = urlsplit(broker_url)
    api = urlsplit(api_url or f"http://{broker.hostname}:{MANAGEMENT_PORT}")
    credentials = broker.netloc.rpartition("@")[0]
    if credentials and "@" not in api.netloc:
        api = api._replace(netloc=f"{credentials}@{api.netloc}")
    return urlunsplit(api).rstrip("/")


def vhost_of(broker_url: str) -> str:
    import pika

    return pika.URLParameters(broker_url).virtual_host


def queues_by_api(api_url: str, vhost: str) -> Depths:
    """{queue: {ready, unacked, consumers}} from the management API; raises OSError."""
    parts = urlsplit(api_url)
    base = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    request = urllib.request.Request(
        f"{base}/api/queues/{quote(vhost, safe='')}"
        "?columns=name,messages_ready,messages_unacknowledged,consumers")
    if parts.username is not None:
        token = f"{parts.username}:{parts.password or ''}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        listed = {queue["name"]: queue for queue in json.load(response)}
    return {
        name: listed.get(name) and {
            # A queue declared a moment ago has no statistics yet (they come every 5 s).
            "ready": listed[name].get("messages_ready"),
            "unacked": listed[name].get("messages_unacknowledged"),
            "consumers": listed[name].get("consumers"),
        }
        for name in QUEUES
    }


def queues_by_declare(broker_url: str) -> Depths:
    """{queue: {ready, unacked: None, consumers}} by passive declares; raises AMQPError."""
    import pika

    parameters = pika.URLParameters(broker_url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = TIMEOUT
    connection = pika.BlockingConnection(parameters)
    found: Depths = {}
    try:
        for name in QUEUES:
            channel = connection.channel()
            try:
                declared = channel.queue_declare(name, passive=True).method
            except pika.exceptions.ChannelClosedByBroker:
                found[name] = None  # 404: not declared yet (no agent nor worker ever ran)
                continue
            found[name] = {"ready": declared.message_count, "unacked": None,
                           "consumers": declared.consumer_count}
            channel.close()
    finally:
        connection.close()
    return found


def queues(broker_url: str, api_url: str | None = None) -> tuple[str, Depths]:
    """The queues' depths and where they come from: (source, {queue: facts or None})."""
    import pika

    api = management_url(broker_url, api_url)
    problems = []
    if api:
        vhost = vhost_of(broker_url)
        try:
            return f"management API at {redact(api)}", queues_by_api(api, vhost)
        except (OSError, ValueError) as error:
            problem = f"management API at {redact(api)}: {_reason(error)}"
            if getattr(error, "code", None) == 404:
                # The API answered: the vhost does not exist. That is the news, not a cue to ask
                # AMQP, which could only say it less clearly.
                raise QueuesUnknown(f"{problem}: no vhost {vhost!r}") from None
            problems.append(problem)
    try:
        return f"passive declare at {redact(broker_url)}", queues_by_declare(broker_url)
    except pika.exceptions.AMQPError as error:
        # A refusal carries the broker's own words, such as "NOT_ALLOWED - vhost x not found".
        said = error.args[0] if error.args and isinstance(error.args[0], str) else None
        problems.append(f"RabbitMQ at {redact(broker_url)}: {said or type(error).__name__}")
    raise QueuesUnknown("; ".join(problems))


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    return str(getattr(error, "reason", None) or error)


# --- the report (pure)


def build(queue_facts: tuple[str, Depths] | str, records: list[ImportRecord] | str,
          late: "list[Late] | str", now: datetime) -> dict[str, Any]:
    """The status from gathered facts. Each fact may instead be the line saying why it could
    not be read: `unknown` then names it, {"queues" | "imports" | "late": why}.

    `queue_facts`: (source, {queue: {ready, unacked, consumers} or None}).
    `records`: import records (running ones with their progress, held and failed ones).
    `late`: late files as dicts of account, file, due, last_received.
    """
    since = now - FAILED_WINDOW
    unknown = {part: fact for part, fact in (
        ("queues", queue_facts), ("imports", records), ("late", late)) if isinstance(fact, str)}
    source, depths = (None, {}) if isinstance(queue_facts, str) else queue_facts
    records = [] if isinstance(records, str) else records
    late = [] if isinstance(late, str) else late
    return {
        "queues": {
            "source": source,
            "queues": [{"name": name, "declared": depths.get(name) is not None,
                        **(depths.get(name) or dict.fromkeys(("ready", "unacked", "consumers")))}
                       for name in QUEUES] if source else [],
        },
        "running": [{key: record.get(key) for key in (
            "id", "account", "file", "received_at", "started_at", "rows_done",
            "rows_per_second", "seconds_left", "progress_at")}
            for record in records if record["status"] == "running"],
        # Left running by a worker that stopped without a word (progress.as_seen).
        "interrupted": [{key: record.get(key) for key in (
            "id", "account", "file", "received_at", "started_at", "rows_done", "progress_at")}
            for record in records if record["status"] == "interrupted"],
        # Dead-lettered while the store was down, an import has no finish time yet.
        "failed": [{key: record.get(key) for key in (
            "id", "account", "file", "received_at", "finished_at", "reason")}
            for record in records if record["status"] == "failed"
            and (record["finished_at"] is None
                 or datetime.fromisoformat(record["finished_at"]) >= since)],
        # Waiting for an operator (`dropimport imports approve` / `reject`), however old.
        "held": [{key: record.get(key) for key in (
            "id", "account", "file", "received_at", "finished_at", "reason")}
            for record in records if record["status"] == "held"],
        "late": [{"account": file["account"], "file": file["file"],
                  "due": _iso(file["due"]), "last_received": _iso(file.get("last_received"))}
                 for file in late],
        "unknown": unknown,
    }


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else value


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]],
           unknown: str | None = None) -> list[str]:
    if unknown:
        return [title, f"  unknown: {unknown}"]
    lines = [f"{title} ({len(rows)})"]
    if not rows:
        return [*lines, "  none"]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    for row in (headers, *rows):
        lines.append("  " + "  ".join(f"{cell!s:{width}}" for cell, width in
                                      zip(row, widths, strict=True)).rstrip())
    return lines


def _shown(value: object) -> object:
    return "-" if value is None else value


def render(status: dict[str, Any]) -> str:
    """The status as the tables an operator reads; what could not be read says why."""
    queues_, unknown = status["queues"], status["unknown"]
    lines = _table("QUEUES", ("QUEUE", "READY", "UNACKED", "CONSUMERS"), [
        (q["name"] if q["declared"] else f"{q['name']} (not declared yet)",
         _shown(q["ready"]), _shown(q["unacked"]), _shown(q["consumers"]))
        for q in queues_["queues"]], unknown.get("queues"))
    if queues_["source"]:
        lines.append(f"  from the {queues_['source']}")
    progress = [(r["id"], r["account"], r["file"], r["started_at"] or "-",
                 _shown(r["rows_done"]), _shown(r["rows_per_second"]), _shown(r["seconds_left"]))
                for r in status["running"]]
    lines += ["", *_table("RUNNING IMPORTS", ("ID", "ACCOUNT", "FILE", "STARTED", "ROWS DONE",
                                              "ROWS/S", "SECONDS LEFT"), progress,
                          unknown.get("imports"))]
    lines += ["", *_table("INTERRUPTED IMPORTS", ("ID", "ACCOUNT", "FILE", "STARTED",
                                                  "ROWS DONE", "LAST PROGRESS"),
                          [(r["id"], r["account"], r["file"], r["started_at"] or "-",
                            _shown(r["rows_done"]), r["progress_at"] or "-")
                           for r in status["interrupted"]], unknown.get("imports"))]
    if status["interrupted"]:
        lines.append("  their workers stopped: each is imported again when RabbitMQ hands its "
                     "message to a worker")
    lines += ["", *_table("FAILED IMPORTS, LAST 24 H", ("ID", "ACCOUNT", "FILE", "FINISHED",
                                                         "REASON"),
                          [(r["id"], r["account"], r["file"], _shown(r["finished_at"]),
                            r["reason"] or "") for r in status["failed"]],
                          unknown.get("imports"))]
    lines += ["", *_table("HELD IMPORTS", ("ID", "ACCOUNT", "FILE", "HELD", "REASON"),
                          [(r["id"], r["account"], r["file"], _shown(r["finished_at"]),
                            r["reason"] or "") for r in status["held"]],
                          unknown.get("imports"))]
    if status["held"]:
        lines.append("  each waits for `dropimport imports approve ID` or `reject ID`; later "
                     "files of its template wait behind it")
    lines += ["", *_table("LATE FILES", ("ACCOUNT", "FILE", "DUE", "LAST RECEIVED"),
                          [(f["account"], f["file"], f["due"], _shown(f["last_received"]))
                           for f in status["late"]], unknown.get("late"))]
    return "\n".join(lines)
