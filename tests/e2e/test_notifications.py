"""Notifications with real processes: FTP upload -> worker -> e-mail and webhook received;
a late file alerted by the worker's own checker."""

import io
import json
import re

import pytest

from tests.conftest import DEMO
from tests.harness import DROPIMPORT, WORKER, wait_until
from tests.receivers import Webhook, smtp_server

HEADER = "E-mail;Prénom;Nom;Ville\r\n"


@pytest.fixture
def receivers():
    """A real SMTP server and webhook receiver; the secret is set once the account exists."""
    with smtp_server() as (mailbox, port), Webhook(secret="") as webhook:
        yield mailbox, port, webhook


def create_acme(system, webhook, *options):
    created = system.cli("account", "create", "acme", "--ftp-user", "acme-ftp",
                         "--password-stdin", "--notify-email", "it@acme.example",
                         "--webhook-url", webhook.url, *options, input="acme-secret\n")
    # The secret is shown once, at creation, for the receiver to check signatures with
    webhook.secret = re.search(r"webhook secret .*: ([0-9a-f]{64})", created.stdout)[1]
    # and never listed
    assert webhook.secret not in system.cli("account", "list", "--json").stdout


def test_an_upload_rejected_is_notified_by_email_and_webhook(stopped_system, receivers):
    mailbox, smtp_port, webhook = receivers
    system = stopped_system
    create_acme(system, webhook, "--notify-on", "rejected", "--notify-on", "imported")
    system.cli("template", "set", "acme", str(DEMO / "template.json"))
    system.start(env={"DROPIMPORT_SMTP_HOST": "127.0.0.1", "DROPIMPORT_SMTP_PORT": str(smtp_port),
                      "DROPIMPORT_SMTP_TLS": "off",
                      "DROPIMPORT_SMTP_FROM": "imports@platform.example"})
    # When the customer uploads a file whose header changed
    with system.ftp("acme-ftp", "acme-secret") as ftp:
        ftp.storbinary("STOR contacts.csv", io.BytesIO(
            b"Mail;Pr\xc3\xa9nom;Nom;Ville\r\njo@x.com;Jo;Doe;Lyon\r\n"))
    [record] = system.wait_for_imports(1)
    assert record["status"] == "rejected"
    # Then the account's contact gets an e-mail naming the file, the status and the reason
    wait_until(lambda: mailbox.messages, what="the e-mail")
    [mail] = mailbox.messages
    assert mail["rcpt_tos"] == ["it@acme.example"]
    assert mail["message"]["From"] == "imports@platform.example"
    assert mail["message"]["Subject"] == "[dropimport] contacts.csv rejected (acme)"
    assert record["reason"] in mail["message"].get_content()
    # And the webhook receives the signed JSON notice
    wait_until(lambda: webhook.requests, what="the webhook")
    [request] = webhook.requests
    assert request["valid"]
    assert {k: request["json"][k] for k in ("event", "account", "file", "import_id", "reason")} \
        == {"event": "import.rejected", "account": "acme", "file": "contacts.csv",
            "import_id": record["id"], "reason": record["reason"]}
    assert request["json"]["report"] == f"reports/contacts.csv.{record['id']}.json"


def test_a_late_file_is_alerted_by_the_worker(stopped_system, receivers, tmp_path):
    mailbox, smtp_port, webhook = receivers
    system = stopped_system
    create_acme(system, webhook)
    # Given a file expected every day at 06:00 (2h grace), by an account created days ago
    template = {**json.loads((DEMO / "template.json").read_text("utf-8")),
                "expected": {"cron": "0 6 * * *", "grace": "2h"}}
    (tmp_path / "template.json").write_text(json.dumps(template), encoding="utf-8")
    system.cli("template", "set", "acme", str(tmp_path / "template.json"))
    document = system.home / "accounts" / "acme.json"
    account = json.loads(document.read_text("utf-8"))
    document.write_text(json.dumps({**account, "created_at": "2026-01-01T00:00:00+00:00"}))
    # When the worker runs, checking every second
    system.start(env={"DROPIMPORT_LATE_CHECK_SECONDS": "1", "DROPIMPORT_SMTP_HOST": "127.0.0.1",
                      "DROPIMPORT_SMTP_PORT": str(smtp_port), "DROPIMPORT_SMTP_TLS": "off"})
    # Then the late file is notified once, and logged
    wait_until(lambda: webhook.requests and mailbox.messages, what="the late-file alerts")
    [request] = webhook.requests
    assert request["valid"] and request["json"]["event"] == "file.late"
    assert request["json"]["file"] == "contacts.csv" and request["json"]["last_received"] is None
    assert "not received" in mailbox.messages[0]["message"]["Subject"]
    wait_until(lambda: "late file: contacts.csv of account acme" in system.log.read_text(),
               what="the log line")
    system.stop()
    assert len(webhook.requests) == 1 and len(mailbox.messages) == 1


def test_a_cancelled_import_is_notified_once_a_worker_runs(stopped_system, receivers):
    mailbox, smtp_port, webhook = receivers
    system = stopped_system
    create_acme(system, webhook)
    system.cli("template", "set", "acme", str(DEMO / "template.json"))
    # Given an upload waiting in the queue (no worker running), cancelled by the operator
    system.start([DROPIMPORT, "agent"])
    with system.ftp("acme-ftp", "acme-secret") as ftp:
        ftp.storbinary("STOR contacts.csv", io.BytesIO((HEADER + "jo@x.com;Jo;Doe;Lyon\r\n")
                                                       .encode()))
    [queued] = wait_until(lambda: [r for r in system.imports() if r["status"] == "queued"],
                          what="the queued import")
    system.cli("imports", "cancel", queued["id"])
    # When a worker starts later, the notification waiting in RabbitMQ is delivered
    system.start(WORKER, env={"DROPIMPORT_SMTP_HOST": "127.0.0.1",
                              "DROPIMPORT_SMTP_PORT": str(smtp_port),
                              "DROPIMPORT_SMTP_TLS": "off"}, wait_for_ftp=False)
    wait_until(lambda: webhook.requests and mailbox.messages, what="the notifications")
    assert webhook.requests[0]["json"]["status"] == "failed"
    assert webhook.requests[0]["json"]["reason"] == "cancelled by an operator"
    assert "Reason: cancelled by an operator" in mailbox.messages[0]["message"].get_content()
