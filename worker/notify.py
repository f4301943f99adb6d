"""Notifications: an e-mail to the account's contacts and/or a signed webhook when an import
ends (`rejected`, `failed`, and if asked `imported`), an expected file is `late`, or an export
run ends (`export_failed`, and if asked `export_done`).

The importer only enqueues (`Notifications.concluded`); the `notify` actor delivers, one
message per channel, so that a webhook being retried never sends the e-mail again. Why a
dramatiq actor rather than an outbox drained by a thread: the message is durable in RabbitMQ
and survives a worker restart, dramatiq retries it with exponential backoff, and once the
retries are exhausted it waits in `contact-imports.notifications.XQ`, visible in the
management UI; nothing new to run or to drain. Its own queue keeps notifications from waiting
behind a queue of imports. Every failed attempt is logged with its number.
"""

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from http.client import HTTPMessage
from typing import IO, TYPE_CHECKING, Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from dropimport.accounts import AccountError, Registry, notify_events
from schemas.settings import Smtp

from .record import COUNTS, FINAL, ImportRecord
from .report import rejected_rows_report

if TYPE_CHECKING:
    from .overdue import Late
    from .write.store import Store

log = logging.getLogger(__name__)

QUEUE = "contact-imports.notifications"
ACTOR = "notify"
CHANNELS = ("email", "webhook")
#: The events notified when the account's `notify.on` does not say.
DEFAULT_EVENTS = notify_events()[1]
#: Seconds an SMTP or HTTP exchange may take.
TIMEOUT = 10
#: Rejected rows named in a notification; the customer's report has them all.
REJECTIONS_SHOWN = 5
SIGNATURE_HEADER = "X-Dropimport-Signature"
TIMESTAMP_HEADER = "X-Dropimport-Timestamp"


class DeliveryError(Exception):
    """A notification could not be delivered this time; the message says why."""


# --- what is notified: JSON-ready notices (pure)

def import_notice(record: ImportRecord) -> dict[str, Any]:
    """The notice of an import that reached its final status."""
    file, import_id = record["file"], record["id"]
    rejected_report = None
    if record["status"] != "failed" and record["rejected_rows"]:
        rejected_report = f"reports/{rejected_rows_report(file, import_id)}"
    counts: Mapping[str, Any] = record  # read by the names of COUNTS
    return {
        # A rollback is news of its own, after the import's.
        "id": f"import:{import_id}:{record['finished_at']}" + (
            f":rolled_back:{record['rolled_back_at']}" if record["status"] == "rolled_back"
            else ""),
        "event": f"import.{record['status']}",
        "account": record["account"],
        "file": file,
        "status": record["status"],
        "import_id": import_id,
        "reason": record["reason"],
        "note": record["note"],
        "counts": {name: counts[name] for name in COUNTS},
        "received_at": record["received_at"],
        "finished_at": record["finished_at"],
        "report": f"reports/{file}.{import_id}.json",
        "rejected_report": rejected_report,
        "rejections": [{key: r[key] for key in ("line", "column", "reason")}
                       for r in record["rejections"][:REJECTIONS_SHOWN]],
        "changes": record.get("changes"),
        "rollback": record.get("rollback"),
    }


def late_notice(late: "Late") -> dict[str, Any]:
    """The notice of an expected file not received by its due time."""
    due = late["due"].isoformat()
    last = late["last_received"]
    return {
        "id": f"late:{late['account']}:{late['file']}:{due}",
        "event": "file.late",
        "account": late["account"],
        "file": late["file"],
        "status": "late",
        "due": due,
        "last_received": last and last.isoformat(),
    }


def export_notice(run: dict[str, Any]) -> dict[str, Any]:
    """The notice of an export run that ended: done, or failed once its retries are spent."""
    return {
        "id": f"export:{run['id']}:{run['status']}",
        "event": f"export.{run['status']}",
        "account": run["account"],
        "export": run["export"],
        "file": run["file"],
        "status": run["status"],
        "run_id": run["id"],
        "planned_for": run["planned_for"],
        "finished_at": run["finished_at"],
        "rows": run["rows"],
        "bytes": run["bytes"],
        "destination": run["destination"],
        "attempts": run["attempts"],
        "error": run["error"],
    }


def signature(secret: str, body: bytes) -> str:
    """The value of the signature header: `sha256=` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_request(notice: dict[str, Any], secret: str,
                    now: datetime) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the webhook POST. The body holds the time it was sent, so that
    the signature covers it and a receiver can refuse an old request replayed."""
    body = json.dumps({**notice, "sent_at": now.isoformat()}, ensure_ascii=False).encode()
    return body, {
        "Content-Type": "application/json",
        "User-Agent": "dropimport",
        "X-Dropimport-Event": notice["event"],
        "X-Dropimport-Delivery": notice["id"],  # the same on every attempt: dedupe with it
        TIMESTAMP_HEADER: str(int(now.timestamp())),
        SIGNATURE_HEADER: signature(secret, body),
    }


def _when(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def email_message(notice: dict[str, Any], sender: str, recipients: Iterable[str],
                  now: datetime) -> EmailMessage:
    """The plain-text e-mail of a notice: file, status, counts and the first reasons."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(now.timestamp())
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-reply to it
    file, account = notice["file"], notice["account"]
    if notice["event"].startswith("export."):
        message["Subject"] = f"[dropimport] export {notice['export']} {notice['status']} " \
                             f"({account})"
        lines = [f"The export {notice['export']} of account {account}, planned for "
                 f"{_when(notice['planned_for'])}, {notice['status']}:", ""]
        if notice["status"] == "done":
            lines.append(f"{notice['rows']} contacts, {notice['bytes']} bytes, written to "
                         f"{notice['destination']}")
        else:
            lines.append(f"{notice['error']} (after {notice['attempts']} attempts; the "
                         f"file was for {notice['destination']})")
        message.set_content("\n".join(lines) + "\n")
        return message
    if notice["status"] == "late":
        message["Subject"] = f"[dropimport] {file} not received ({account})"
        last = notice["last_received"]
        message.set_content(
            f"The file {file} of account {account} was expected by {_when(notice['due'])} "
            "and has not been received.\n\n"
            f"Last received: {_when(last) if last else 'never'}\n")
        return message
    counts = notice["counts"]
    message["Subject"] = f"[dropimport] {file} {notice['status']} ({account})"
    lines = [f"The file {file} of account {account} was {notice['status']}.", ""]
    if notice["reason"]:
        lines += [f"Reason: {notice['reason']}", ""]
    if notice["note"]:
        lines += [f"Note: {notice['note']}", ""]
    lines += [
        f"Import: {notice['import_id']}, received {_when(notice['received_at'])}",
        f"Rows: {counts['rows']} ({counts['created']} created, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged, {counts['skipped']} skipped, "
        f"{counts['rejected_rows']} rejected)",
    ]
    if notice["rejections"]:
        lines += ["", "First rejected rows:"]
        lines += [f"  line {r['line']}" + (f", column {r['column']!r}" if r["column"] else "")
                  + f": {r['reason']}" for r in notice["rejections"]]
    lines += ["", f"The report is in your FTP folder: {notice['report']}"]
    if notice["rejected_report"]:
        lines.append(f"Every rejected row: {notice['rejected_report']}")
    message.set_content("\n".join(lines) + "\n")
    return message


# --- delivery (I/O)

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would follow a redirect of a POST with a GET and no body: refuse it instead.
    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: HTTPMessage, newurl: str) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = TIMEOUT) -> None:
    """POST `body`; any answer but 2xx raises DeliveryError."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(4096)
    except urllib.error.HTTPError as error:
        error.close()
        raise DeliveryError(f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise DeliveryError(str(error.reason)) from None
    except OSError as error:  # a timeout, a reset connection
        raise DeliveryError(str(error) or type(error).__name__) from None


def send_mail(smtp: Smtp, message: EmailMessage) -> None:
    """Send `message` through the relay of the Smtp settings (STARTTLS, implicit TLS or none)."""
    assert smtp.host is not None  # its callers send only when a relay is set
    context = ssl.create_default_context()
    if smtp.ca_file:
        context.load_verify_locations(smtp.ca_file)
    client: smtplib.SMTP
    try:
        if smtp.tls == "ssl":
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=TIMEOUT, context=context)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=TIMEOUT)
        with client:
            if smtp.tls == "starttls":
                client.starttls(context=context)
            if smtp.user:
                client.login(smtp.user, smtp.password or "")
            refused = client.send_message(message)
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryError(f"{type(error).__name__}: {error}") from None
    if refused:
        log.warning("e-mail %r refused for %s", message["Subject"], ", ".join(refused))


class Delivery:
    """Delivers one notice on one channel, to the account's settings as they are now."""

    def __init__(self, registry: Registry, smtp: Smtp,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.registry = registry
        self.smtp = smtp
        self.clock = clock

    def __call__(self, channel: str, notice: dict[str, Any]) -> None:
        try:
            notify = self.registry.get(notice["account"]).get("notify") or {}
        except AccountError:
            log.warning("notification %s dropped: account %s no longer exists",
                        notice["id"], notice["account"])
            return
        if channel == "email" and notify.get("email"):
            if not self.smtp.host:
                log.warning("notification %s not e-mailed: DROPIMPORT_SMTP_HOST is not set",
                            notice["id"])
                return
            send_mail(self.smtp, email_message(notice, self.smtp.sender, notify["email"],
                                               self.clock()))
        elif channel == "webhook" and notify.get("webhook"):
            hook = notify["webhook"]
            post(hook["url"], *webhook_request(notice, hook["secret"], self.clock()))

    def attempt(self, channel: str, notice: dict[str, Any], retries: int,
                max_retries: int) -> None:
        """Deliver, logging a failed attempt; raise dramatiq's Retry for the next one."""
        try:
            self(channel, notice)
        except DeliveryError as error:
            attempt = f"attempt {retries + 1} of {max_retries + 1}"
            if retries >= max_retries:
                log.error("notification %s of account %s by %s failed, %s: %s; giving up",
                          notice["id"], notice["account"], channel, attempt, error)
            else:
                log.warning("notification %s of account %s by %s failed, %s: %s; "
                            "will retry", notice["id"], notice["account"], channel, attempt,
                            error)
            raise dramatiq.Retry(str(error)) from None
        log.info("notification %s of account %s sent by %s", notice["id"], notice["account"],
                 channel)


def declare(broker: dramatiq.Broker, delivery: Delivery, max_retries: int, min_backoff: int,
            max_backoff: int) -> dramatiq.Actor[[str, dict[str, Any]], None]:
    """Declare the `notify` actor on `broker`: it delivers one notice on one channel."""

    def notify(channel: str, notice: dict[str, Any]) -> None:
        message = CurrentMessage.get_current_message()
        assert message is not None  # an actor's, with the CurrentMessage middleware
        delivery.attempt(channel, notice, message.options.get("retries", 0), max_retries)

    return dramatiq.actor(
        broker=broker, actor_name=ACTOR, queue_name=QUEUE, max_retries=max_retries,
        min_backoff=min_backoff, max_backoff=max_backoff, time_limit=5 * TIMEOUT * 1000,
    )(notify)


# --- the importer's side: decide and enqueue, never fail

class Notifications:
    """Tells an account's contacts how its imports end and which files are late.

    Only enqueues; a notification that cannot even be queued is logged, never raised, so
    that it can never fail an import.
    """

    def __init__(self, registry: Registry, store: "Store",
                 send: Callable[[str, dict[str, Any]], object]) -> None:
        self.registry = registry
        self.store = store
        self.send = send  # send(channel, notice): the notify actor's `send`

    def concluded(self, record: ImportRecord | None) -> None:
        """Enqueue the notifications of an import's final status, once per conclusion."""
        if record is not None and record["status"] in (*FINAL, "held"):
            self._enqueue(record["status"], import_notice(record), once=True)

    def late(self, late: "Late") -> None:
        """Enqueue the notifications of a late file (the caller raises each one once)."""
        self._enqueue("late", late_notice(late))

    def exported(self, run: dict[str, Any]) -> None:
        """Enqueue the notifications of an export run that ended (done or failed), once."""
        self._enqueue(f"export_{run['status']}", export_notice(run), once=True)

    def _enqueue(self, event: str, notice: dict[str, Any], once: bool = False) -> None:
        try:
            notify = self.registry.get(notice["account"]).get("notify") or {}
            channels = [channel for channel in CHANNELS if notify.get(channel)]
            if event not in notify.get("on", DEFAULT_EVENTS) or not channels:
                return
            # The importer concludes an import again when its message is redelivered.
            if once and not self.store.raise_once(notice["id"], notice["account"]):
                return
            try:
                for channel in channels:
                    self.send(channel, notice)
            except Exception:
                if once:
                    self.store.forget(notice["id"])  # a redelivery will try again
                raise
        except Exception:
            log.exception("could not queue notification %s of account %s", notice["id"],
                          notice["account"])


class Silent:
    """Notifications that notify nobody: an Importer's when it is given none."""

    def concluded(self, record: ImportRecord | None) -> None:
        pass

    def late(self, late: "Late") -> None:
        pass

    def exported(self, run: dict[str, Any]) -> None:
        pass
