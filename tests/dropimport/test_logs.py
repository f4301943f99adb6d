"""The log context and the two line formats."""

import contextvars
import io
import json
import logging
import threading

import pytest

from dropimport import logs


@pytest.fixture
def lines():
    """Format the records of a logger of the test's own as `configure_logging` does."""

    def capture(formatter):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.addFilter(logs.ContextFilter())
        handler.setFormatter(formatter)
        logger = logging.getLogger(f"test.logs.{id(stream)}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        return logger, lambda: stream.getvalue().splitlines()

    return capture


def test_text_lines_end_with_the_fields_of_the_context(lines):
    logger, read = lines(logs.TextFormatter())
    with logs.context(account="acme", import_id="20261125-1", file="contacts.csv"):
        logger.warning("import %s failed", "20261125-1")
    logger.warning("outside")
    inside, outside = read()
    assert inside.endswith(" WARNING test.logs." + inside.split("test.logs.")[1].split(":")[0]
                           + ": import 20261125-1 failed account=acme import_id=20261125-1 "
                           "file=contacts.csv")
    assert outside.endswith(": outside")


def test_the_door_an_upload_came_in_by_is_a_field(lines):
    logger, read = lines(logs.JSONFormatter())
    with logs.context(account="acme", file="contacts.csv", protocol="sftp"):
        logger.info("upload received")
    line = json.loads(read()[0])
    assert (line["account"], line["file"], line["protocol"]) == ("acme", "contacts.csv", "sftp")


def test_json_lines_hold_the_fields_and_the_traceback(lines):
    logger, read = lines(logs.JSONFormatter())
    with logs.context(account="acme"), logs.context(file="contacts.csv", import_id=None):
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("could not hand over upload")
    [line] = map(json.loads, read())
    assert {k: line[k] for k in ("level", "message", "account", "file")} == {
        "level": "ERROR", "message": "could not hand over upload", "account": "acme",
        "file": "contacts.csv"}
    assert "import_id" not in line
    assert "ValueError: boom" in line["exception"]


def test_each_thread_has_its_own_context(lines):
    logger, read = lines(logs.JSONFormatter())

    def session():
        logs.bind(account="acme")  # as an FTP session does at login, in its own thread
        other = threading.Thread(target=logger.info, args=("other session",))
        other.start()
        other.join()
        logger.info("this session")

    contextvars.copy_context().run(session)  # the binding ends with this test
    logger.info("after")
    assert [line.get("account") for line in map(json.loads, read())] == [None, "acme", None]


def test_the_format_is_text_on_a_terminal_and_json_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert logs.resolve(None, Terminal()) == "text"
    assert logs.resolve(None, io.StringIO()) == "json"
    assert logs.resolve("json", Terminal()) == "json"


@pytest.mark.parametrize("formatter", [logs.TextFormatter, logs.JSONFormatter])
def test_a_name_holding_line_breaks_cannot_forge_a_log_line(lines, formatter):
    # Given an upload name holding a line feed, a carriage return and other controls
    name = "contacts.csv\n2026-12-02 10:00:00 INFO agent.ftp: forged\r\x1b[31m\u2028\x85x"
    logger, read = lines(formatter())
    # When it is logged, in the message and as the context's file
    with logs.context(account="acme", file=name):
        logger.warning("upload of %s refused", name)
    # Then the record is one line, which shows the controls escaped
    [line] = read()
    assert "forged" in line and not {"\x1b", "\u2028", "\x85"} & set(line)
    if formatter is logs.TextFormatter:
        assert line.count("contacts.csv\\n2026-12-02 10:00:00 INFO agent.ftp: forged\\r") == 2


def test_a_traceback_keeps_its_lines_in_text(lines):
    logger, read = lines(logs.TextFormatter())
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    assert read()[-1] == "ValueError: boom"
