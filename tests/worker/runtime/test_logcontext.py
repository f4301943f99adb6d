"""The lines a worker thread logs while it handles a file event name its account, import, file."""

import logging

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries

from dropimport import logs
from worker.runtime.logcontext import LogContext

EVENT = {"import_id": "20261125-083512-100000-9f3a", "account": "acme", "file": "contacts.csv"}


@pytest.fixture
def broker():
    broker = StubBroker(middleware=[Retries()])  # no TimeLimit: its thread outlives the test
    broker.add_middleware(LogContext(), before=Retries)
    broker.emit_after("process_boot")
    yield broker
    broker.close()


def test_dramatiqs_own_lines_carry_the_fields_of_the_event(broker, caplog):
    caplog.handler.addFilter(logs.ContextFilter())

    @dramatiq.actor(broker=broker, max_retries=0)
    def import_file(event):
        logging.getLogger("worker.importer").info("importing")
        raise RuntimeError("the store is down")

    worker = dramatiq.Worker(broker, worker_timeout=100)
    worker.start()
    try:
        with caplog.at_level(logging.INFO):
            import_file.send(EVENT)
            broker.join(import_file.queue_name, fail_fast=False)
            worker.join()
    finally:
        worker.stop()
    # Our line, dramatiq's failure and its giving up: all name the import
    lines = [r for r in caplog.records if r.name.startswith(("worker", "dramatiq.worker",
                                                              "dramatiq.middleware"))]
    messages = [r.getMessage() for r in lines]
    assert "importing" in messages
    assert any(m.startswith("Failed to process message") for m in messages)
    assert any("Retries exceeded" in m for m in messages)
    assert {(r.account, r.import_id, r.file) for r in lines} == {
        ("acme", EVENT["import_id"], "contacts.csv")}
    # And once the message is handled, the thread's lines no longer do
    assert logs.current() == {}
