"""An unexpected failure is told by its error's class and a short message: the import record,
the customer's report, the log, `dropimport status` and `imports show` never hold the SQL of a
statement nor the values of a row."""

import json
import logging

import psycopg
import pytest
from click.testing import CliRunner
from dramatiq import Message
from dramatiq.broker import MessageProxy
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from schemas import ACTOR, QUEUE
from schemas.settings import Settings
from tests.worker.conftest import HEADER, spool
from worker import cli
from worker.cli import history
from worker.failure import reason, redacted
from worker.runtime.deadletters import DeadLetters

#: What the store refuses, as a fault the test puts in: a contact written (by the import's
#: COPY or executemany, on the driver's connection) or the final record of an imported file
#: (an UPDATE through SQLAlchemy).
FAULTS = {
    ("postgresql", "contacts"): "ALTER TABLE contacts ADD CONSTRAINT fault CHECK (false)",
    ("postgresql", "imports"):
        "ALTER TABLE imports ADD CONSTRAINT fault CHECK (status <> 'imported')",
    ("sqlite", "contacts"):
        "CREATE TRIGGER fault BEFORE INSERT ON contacts BEGIN SELECT RAISE(ABORT, 'refused'); END",
    ("sqlite", "imports"):
        "CREATE TRIGGER fault BEFORE UPDATE ON imports WHEN NEW.status = 'imported' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END",
}
REASONS = {
    "postgresql": 'CheckViolation: new row for relation "{table}" violates check constraint '
                  '"fault"',
    "sqlite": "IntegrityError: refused",
}
#: A row's values, and what a statement's text or PostgreSQL's report of a failing row adds.
SECRETS = ("jo.secret@example.com", "Secretname", "bad-secret", "[SQL", "SET status",
           "DETAIL", "CONTEXT", "Failing row")


@pytest.mark.parametrize("table", ["contacts", "imports"])
def test_a_failure_of_the_store_tells_no_sql_nor_values(importer, home, settings, caplog,
                                                        monkeypatch, table):
    # Given a store that refuses what the import writes, and a file of a valid row and an
    # invalid one
    dialect = importer.store.engine.dialect.name
    with importer.store.transaction() as connection:
        connection.execute(text(FAULTS[dialect, table]))
    event = spool(home, "acme", HEADER + "jo.secret@example.com;Jo;Secretname;Lyon\r\n"
                                         "bad-secret;Al;Secretname;Nice\r\n")
    # When it is imported
    with caplog.at_level(logging.INFO):
        record = importer.run(event)
    # Then it failed, told by the driver's error class and its primary message alone
    expected = REASONS[dialect].format(table=table)
    assert (record["status"], record["reason"]) == ("failed", expected)
    # And the report, the log (its traceback included), `dropimport status` and
    # `imports show` hold neither SQL nor the row's values
    report = (home.reports("acme") / f"contacts.csv.{event['import_id']}.json").read_text()
    assert json.loads(report)["reason"] == expected
    [failed] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failed.getMessage().endswith(f"failed: {expected}")
    assert "Traceback" in caplog.text
    monkeypatch.setattr(history, "open_store", lambda _: importer.store)  # closed by the fixture
    shown = [shown_by(settings, command) for command in (
        [cli.status], [cli.status, "--json"], [cli.imports, "show", event["import_id"]],
        [cli.imports, "show", event["import_id"], "--json"])]
    assert expected in shown[0] and expected in shown[2]
    for output in (json.dumps(record), report, caplog.text, *shown):
        assert not [secret for secret in SECRETS if secret in output], output


def shown_by(settings, command):
    """What `dropimport COMMAND` prints, RabbitMQ out of reach (the status says so)."""
    offline = Settings.from_env({
        "DROPIMPORT_HOME": str(settings.home.root),
        "DROPIMPORT_DATABASE_URL": settings.database_url,
        "DROPIMPORT_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/%2F",
        "DROPIMPORT_RABBITMQ_API_URL": "off",
    })
    group, *args = command
    result = CliRunner().invoke(group, args, obj=offline, catch_exceptions=False)
    # The status is printed all the same, and exits 1 for the queues it could not read.
    assert result.exit_code == (1 if group is cli.status else 0), result.output
    return result.output


def test_an_import_given_up_on_is_failed_without_its_error_s_sql(importer, home):
    # Given a file whose message dramatiq gave up on, the store unreachable at each attempt
    event = spool(home, "acme", HEADER + "jo@x.com;Jo;Doe;Lyon\r\n")
    proxy = MessageProxy(Message(queue_name=QUEUE, actor_name=ACTOR, args=(event,), kwargs={},
                                 options={"retries": 3}))
    proxy.fail()
    error = OperationalError("UPDATE imports SET reason=%(reason)s", {"reason": "x"},
                             psycopg.OperationalError("connection failed: server closed"))
    # When the dead-letter middleware hears of it
    DeadLetters(lambda: importer).after_process_message(None, proxy, exception=error)
    # Then the import is failed with the driver's error, not the statement
    record = importer.store.get_import(event["import_id"])
    assert (record["status"], record["reason"]) == (
        "failed", "OperationalError: connection failed: server closed (gave up after 3 attempts)")


def test_a_sqlalchemy_error_is_told_by_its_driver_s_error():
    # Given SQLAlchemy's error over the driver's, its text holding the statement
    class Refused(Exception):
        pass

    error = IntegrityError("UPDATE imports SET reason=?", ("secret",),
                           Refused("refused\nDETAIL: Failing row contains (secret)"))
    # Then it is told by the driver's error class and the first line of its message
    assert reason(error) == "Refused: refused"


def test_a_long_message_is_cut_and_a_value_quoted_by_postgresql_left_out():
    assert reason(RuntimeError("x" * 500)) == "RuntimeError: " + "x" * 185 + "…"
    error = psycopg.errors.InvalidTextRepresentation(
        'invalid input syntax for type integer: "secret"')
    assert reason(error) == "InvalidTextRepresentation: invalid input syntax for type integer"
    assert reason(KeyError()) == "KeyError"


def test_a_logged_traceback_keeps_the_frames_and_causes_told_by_their_reasons():
    # Given an error raised from another, each with a value past its first line
    value = "@".join(("jo", "x.com"))  # not in a line of source a traceback shows

    def read():
        raise ValueError(f"a bad row\nDETAIL: {value}")

    try:
        try:
            read()
        except ValueError as cause:
            raise RuntimeError(f"while importing\n{value}") from cause
    except RuntimeError as error:
        stand_in = redacted(error)
    # When it is logged as the exception
    shown = logging.Formatter().formatException((None, stand_in, stand_in.__traceback__))
    # Then the traceback has both errors' frames, each told by its reason, and no value
    assert "in read\n" in shown and "direct cause of the following exception" in shown
    assert shown.endswith("worker.failure.Redacted: RuntimeError: while importing")
    assert "worker.failure.Redacted: ValueError: a bad row\n" in shown
    assert value not in shown
