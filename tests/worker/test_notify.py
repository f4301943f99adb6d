"""Notifications: what they say, how they are delivered (a real SMTP server, a real HTTP
receiver), retried with backoff, and never a cause of a failed import."""

import hmac
import json
import logging
import ssl
import subprocess
from datetime import UTC, datetime

import pytest
from dramatiq import Message, Worker
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from agent.tls import write_self_signed
from schemas.settings import Smtp
from tests.harness import DROPIMPORT, free_port
from tests.receivers import Webhook, smtp_server
from tests.worker.conftest import HEADER, spool
from worker.notify import (
    QUEUE,
    Delivery,
    DeliveryError,
    Notifications,
    declare,
    email_message,
    import_notice,
    late_notice,
    webhook_request,
)
from worker.runtime.deadletters import DeadLetters

SECRET = "s" * 64
NOW = datetime(2026, 11, 25, 8, 40, tzinfo=UTC)


def rejected_record(**changes):
    return {
        "id": "20261125-083512-100001-9f3a", "account": "acme", "file": "contacts.csv",
        "status": "rejected", "received_at": "2026-11-25T08:35:12.123+00:00",
        "finished_at": "2026-11-25T08:35:13.001+00:00", "rows": 3, "created": 0,
        "updated": 0, "unchanged": 0, "skipped": 0, "rejected_rows": 2,
        "reason": "contacts.csv: 2 of 3 rows rejected, more than max_rejected 1",
        "note": None,
        "rejections": [{"line": n, "column": "E-mail", "value": f"bad{n}",
                        "reason": f"invalid e-mail 'bad{n}'"} for n in range(2, 9)],
        **changes,
    }


def notify_acme(registry, webhook_url=None, on=None, email=("it@acme.example",)):
    """Give account acme (created if need be) these notification settings."""
    notify = {"email": list(email)} if email else {}
    if webhook_url:
        notify["webhook"] = {"url": webhook_url, "secret": SECRET}
    if on:
        notify["on"] = on
    if not any(account["name"] == "acme" for account in registry.list()):
        registry.create("acme", "acme", "pw")
    registry.update("acme", notify=notify)


@pytest.fixture
def tls(tmp_path):
    """A certificate for 127.0.0.1: the SMTP server's context, and its file for the client."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed(cert, key, ["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, str(cert)


# --- what a notification says

def test_the_email_names_the_file_status_counts_and_first_reasons():
    message = email_message(import_notice(rejected_record()), "ops@platform.example",
                            ["it@acme.example", "boss@acme.example"], NOW)
    assert message["Subject"] == "[dropimport] contacts.csv rejected (acme)"
    assert message["To"] == "it@acme.example, boss@acme.example"
    assert message["Date"] == "Wed, 25 Nov 2026 08:40:00 -0000"
    assert message["Message-ID"].endswith("@platform.example>")
    assert message["Auto-Submitted"] == "auto-generated"
    body = message.get_content()
    assert "The file contacts.csv of account acme was rejected." in body
    assert "Reason: contacts.csv: 2 of 3 rows rejected, more than max_rejected 1" in body
    assert "Rows: 3 (0 created, 0 updated, 0 unchanged, 0 skipped, 2 rejected)" in body
    assert "  line 2, column 'E-mail': invalid e-mail 'bad2'" in body
    # Only the first five reasons; the report has them all
    assert "bad6" in body and "bad7" not in body
    assert "reports/contacts.csv.20261125-083512-100001-9f3a.json" in body
    assert "reports/contacts.csv.20261125-083512-100001-9f3a.rejected.csv" in body


def test_the_late_file_email_says_when_it_was_due():
    late = {"account": "acme", "file": "contacts.csv", "due": NOW, "last_received": None}
    message = email_message(late_notice(late), "ops@platform.example", ["it@acme.example"], NOW)
    assert message["Subject"] == "[dropimport] contacts.csv not received (acme)"
    assert "expected by 2026-11-25 08:40 UTC and has not been received" in message.get_content()
    assert "Last received: never" in message.get_content()


def test_the_webhook_body_is_signed_with_its_time():
    body, headers = webhook_request(import_notice(rejected_record()), SECRET, NOW)
    assert headers["X-Dropimport-Signature"] == (
        "sha256=" + hmac.new(SECRET.encode(), body, "sha256").hexdigest())
    assert headers["X-Dropimport-Timestamp"] == str(int(NOW.timestamp()))
    assert headers["X-Dropimport-Event"] == "import.rejected"
    payload = json.loads(body)
    assert payload["sent_at"] == NOW.isoformat()
    assert payload["counts"] == {"rows": 3, "created": 0, "updated": 0, "unchanged": 0,
                                 "skipped": 0, "rejected_rows": 2}
    assert payload["report"] == "reports/contacts.csv.20261125-083512-100001-9f3a.json"
    # Signed with another secret, the signature differs
    assert webhook_request(import_notice(rejected_record()), "t" * 64, NOW)[1][
        "X-Dropimport-Signature"] != headers["X-Dropimport-Signature"]


# --- delivery: a real SMTP server

# aiosmtpd refuses AUTH over implicit TLS (its issue 281): the login is tested with STARTTLS.
@pytest.mark.parametrize(("mode", "login"), [
    ("off", None), ("starttls", ("relay", "relay-pw")), ("ssl", None)])
def test_email_is_delivered_through_the_smtp_relay(registry, tls, mode, login):
    context, ca_file = tls
    notify_acme(registry)
    with smtp_server(tls_context=None if mode == "off" else context,
                     implicit_tls=mode == "ssl", login=login) as (mailbox, port):
        user, password = login or (None, None)
        smtp = Smtp(host="127.0.0.1", port=port, tls=mode, sender="ops@platform.example",
                    ca_file=ca_file, user=user, password=password)
        Delivery(registry, smtp)("email", import_notice(rejected_record()))
    [received] = mailbox.messages
    assert received["rcpt_tos"] == ["it@acme.example"]
    assert received["tls"] is (mode != "off")
    assert received["authenticated"] is bool(login)
    assert received["message"]["Subject"] == "[dropimport] contacts.csv rejected (acme)"
    assert "2 rejected" in received["message"].get_content()


def test_an_untrusted_smtp_certificate_is_refused(registry, tls):
    context, _ = tls
    notify_acme(registry)
    with smtp_server(tls_context=context) as (mailbox, port):
        smtp = Smtp(host="127.0.0.1", port=port, tls="starttls")  # no CA file for it
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            Delivery(registry, smtp)("email", import_notice(rejected_record()))
    assert mailbox.messages == []


# --- delivery: a real HTTP receiver

def test_the_webhook_is_posted_with_a_valid_signature(registry):
    with Webhook(SECRET) as webhook:
        notify_acme(registry, webhook.url, email=())
        Delivery(registry, Smtp(), clock=lambda: NOW)("webhook",
                                                      import_notice(rejected_record()))
    [request] = webhook.requests
    assert request["valid"]
    assert request["headers"]["X-Dropimport-Timestamp"] == str(int(NOW.timestamp()))
    assert request["json"]["status"] == "rejected"
    assert request["json"]["import_id"] == "20261125-083512-100001-9f3a"


def test_a_failing_receiver_is_a_delivery_error(registry):
    with Webhook(SECRET, failures=1) as webhook:
        notify_acme(registry, webhook.url, email=())
        with pytest.raises(DeliveryError, match="HTTP 503"):
            Delivery(registry, Smtp())("webhook", import_notice(rejected_record()))


@pytest.fixture
def stub_worker():
    """A dramatiq StubBroker and a worker on it, stopped at the end."""
    broker = StubBroker()
    broker.add_middleware(CurrentMessage())
    # No "process_boot": the TimeLimit middleware's thread would outlive the test.
    worker = Worker(broker, worker_timeout=50)
    worker.start()
    yield broker
    worker.stop()
    broker.close()


def test_a_receiver_failing_twice_gets_the_notification_at_the_third_attempt(
        registry, stub_worker, caplog):
    # Given a receiver that answers 503 twice
    with Webhook(SECRET, failures=2) as webhook:
        notify_acme(registry, webhook.url, email=())
        notify = declare(stub_worker, Delivery(registry, Smtp()), max_retries=5,
                         min_backoff=10, max_backoff=100)
        # When the notification is sent through the actor
        with caplog.at_level(logging.INFO, logger="worker.notify"):
            notify.send("webhook", import_notice(rejected_record()))
            stub_worker.join(QUEUE, fail_fast=True)
    # Then it was retried with backoff, each failed attempt logged, and delivered once
    assert len(webhook.requests) == 3 and len(webhook.delivered) == 1
    assert all(request["valid"] for request in webhook.requests)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(" failed, ")[1].split(":")[0] for w in warnings] == [
        "attempt 1 of 6", "attempt 2 of 6"]
    assert "HTTP 503" in warnings[0] and "will retry" in warnings[0]
    # And every attempt carried the same delivery id, for the receiver to dedupe
    assert len({r["headers"]["X-Dropimport-Delivery"] for r in webhook.requests}) == 1


# --- the importer's side: enqueued once, never a failed import

@pytest.fixture
def sent(importer):
    """Notifications of the importer, recording what they enqueue."""
    sent = []
    importer.notifications = Notifications(importer.registry, importer.store,
                                           lambda channel, notice: sent.append((channel,
                                                                                notice)))
    return sent


BAD_HEADER = "Mail;Prénom;Nom;Ville\r\njo@x.com;Jo;Doe;Lyon\r\n"


def test_a_rejected_import_is_notified_once_on_each_channel(importer, registry, home, sent):
    notify_acme(registry, "http://127.0.0.1:9/hook")
    event = spool(home, "acme", BAD_HEADER)
    record = importer.run(event)
    assert record["status"] == "rejected"
    assert [(channel, notice["event"], notice["import_id"]) for channel, notice in sent] == [
        ("email", "import.rejected", event["import_id"]),
        ("webhook", "import.rejected", event["import_id"])]
    # When the message is delivered again, the import is concluded again but not notified
    importer.run(event)
    assert len(sent) == 2


def test_imported_is_notified_only_when_asked(importer, registry, home, sent):
    notify_acme(registry)
    importer.run(spool(home, "acme", HEADER + "jo@x.com;Jo;Doe;Lyon\r\n"))
    assert sent == []
    notify_acme(registry, on=["imported"])
    importer.run(spool(home, "acme", HEADER + "jo@x.com;Jo;Doe;Paris\r\n"))
    assert [notice["event"] for _, notice in sent] == ["import.imported"]
    # And an account without notify settings is never notified
    importer.run(spool(home, "globex", BAD_HEADER))
    assert len(sent) == 1


def test_a_notification_that_cannot_be_queued_never_fails_the_import(importer, registry,
                                                                     home, caplog):
    # Given a broker that refuses every message
    def refuse(channel, notice):
        raise ConnectionError("RabbitMQ is down")

    importer.notifications = Notifications(importer.registry, importer.store, refuse)
    notify_acme(registry)
    event = spool(home, "acme", BAD_HEADER)
    # Then the import concludes as usual, and the failure is logged
    assert importer.run(event)["status"] == "rejected"
    assert "could not queue notification import:" in caplog.text
    assert "RabbitMQ is down" in caplog.text
    # And once the broker is back, a redelivery of the message notifies
    sent = []
    importer.notifications.send = lambda channel, notice: sent.append(channel)
    importer.run(event)
    assert sent == ["email"]


def test_an_unreachable_receiver_never_fails_the_import(importer, registry, home,
                                                        stub_worker, caplog):
    # Given an account whose webhook points to a port nobody listens on
    notify_acme(registry, f"http://127.0.0.1:{free_port()}/hook", email=())
    notify = declare(stub_worker, Delivery(registry, Smtp()), max_retries=2, min_backoff=10,
                     max_backoff=20)
    importer.notifications = Notifications(importer.registry, importer.store, notify.send)
    # When files are imported
    rejected = importer.run(spool(home, "acme", BAD_HEADER))
    stub_worker.join(QUEUE, fail_fast=False)
    # Then the import is recorded as it ended, the notification given up after its retries
    assert rejected["status"] == "rejected"
    assert importer.store.get_import(rejected["id"])["status"] == "rejected"
    assert "attempt 3 of 3: " in caplog.text and "giving up" in caplog.text
    assert len(stub_worker.dead_letters) == 1


def test_a_notification_given_up_is_not_taken_for_a_failed_import():
    # Given the worker's dead-letter middleware, which marks an import failed
    def no_importer():
        raise AssertionError("a notification's dead letter touched the imports")

    message = Message(queue_name=QUEUE, actor_name="notify", args=("webhook", {"id": "x"}),
                      kwargs={}, options={"retries": 10})
    proxy = MessageProxy(message)
    proxy.fail()
    # When a notification's message is given up, nothing happens to the imports
    DeadLetters(no_importer).after_process_message(None, proxy, exception=RuntimeError("x"))


def test_an_operator_sends_the_notifications_of_an_import_again(importer, registry, home,
                                                                 settings):
    # Given a rejected import of an account notified by e-mail and webhook
    record = importer.run(spool(home, "acme", BAD_HEADER))
    with smtp_server() as (mailbox, port), Webhook(SECRET, failures=1) as webhook:
        notify_acme(registry, webhook.url)
        env = {"PATH": "/usr/bin:/bin", "DROPIMPORT_HOME": str(home.root),
               "DROPIMPORT_DATABASE_URL": settings.database_url,
               "DROPIMPORT_SMTP_HOST": "127.0.0.1", "DROPIMPORT_SMTP_PORT": str(port),
               "DROPIMPORT_SMTP_TLS": "off"}

        def notify_again():
            return subprocess.run([DROPIMPORT, "imports", "notify", record["id"]], env=env,
                                  capture_output=True, text=True, timeout=60)

        # When the receiver fails, the command says so and exits non-zero
        failed = notify_again()
        assert (failed.returncode, failed.stdout, failed.stderr) == (
            1, "email: sent\n", "webhook: HTTP 503 Service Unavailable\n")
        # When it answers, both are sent at once
        sent = notify_again()
        assert (sent.returncode, sent.stdout) == (0, "email: sent\nwebhook: sent\n")
    assert len(mailbox.messages) == 2 and webhook.delivered[0]["json"]["import_id"] == record["id"]
    assert webhook.delivered[0]["valid"]


# --- exports

def test_an_export_run_is_notified_failed_by_default_and_done_when_asked(importer, registry,
                                                                         home, sent):
    from schemas import export_event
    from worker.exporter import Exporter

    notify_acme(registry)
    exporter = Exporter(home, importer.store, importer.notifications)
    registry.set_export("acme", "nightly", {"schedule": "0 6 * * *", "to": "hosted"})
    # A run done is not notified unless asked
    exporter.run(export_event("acme", "nightly", NOW))
    assert sent == []
    notify_acme(registry, on=["export_done"])
    exporter.run(export_event("acme", "nightly", NOW, manual="1"))
    [notice] = [n for channel, n in sent if channel == "email"]
    assert (notice["event"], notice["run_id"], notice["rows"]) == (
        "export.done", "acme.nightly.manual-1", 0)
    message = email_message(notice, "ops@platform.example", ["it@acme.example"], NOW)
    assert message["Subject"] == "[dropimport] export nightly done (acme)"
    assert "0 contacts" in message.get_content()
    assert f"exports/nightly-{NOW:%Y%m%d}.csv" in message.get_content()
    # A run failed is, by default
    sent.clear()
    notify_acme(registry)
    registry.set_export("acme", "nightly", {"schedule": "0 6 * * *", "to": {
        "protocol": "ftp", "host": "127.0.0.1", "port": 9, "user": "u",
        "secret": "env:NOT_SET", "directory": "/"}})
    exporter.run(export_event("acme", "nightly", NOW, manual="2"))
    [notice] = [n for channel, n in sent if channel == "email"]
    assert notice["event"] == "export.failed" and "NOT_SET" in notice["error"]
    assert "environment variable NOT_SET" in email_message(
        notice, "ops@platform.example", ["it@acme.example"], NOW).get_content()
