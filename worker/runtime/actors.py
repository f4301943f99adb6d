"""The dramatiq actors. Thin: they hand the file event to the Importer, a notice to Delivery.

This module is the worker process's entry point (`dropimport worker`, or the ecosystem's own
`dramatiq worker.runtime.actors`): it reads the settings once and sets the broker explicitly before
declaring the actors, so dramatiq never builds an implicit global broker.
"""

import logging
import os
import threading
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import CurrentMessage, Retries, Shutdown

from dropimport.accounts import Registry
from schemas import ACTOR, EXPORT_ACTOR, EXPORT_QUEUE, QUEUE, ExportEvent, FileEvent, SchemaError
from schemas.settings import Settings

from ..exporter import Exporter, TryAgain
from ..importer import Importer
from ..notify import Delivery, Notifications, declare
from ..overdue import LateFiles
from ..write.locks import AccountBusy
from ..write.store import Store
from . import interpreter
from .deadletters import DeadLetters
from .heartbeat import Heartbeat
from .logcontext import LogContext, ProcessLogging
from .periodic import Chores

log = logging.getLogger(__name__)

#: A file whose account another import holds tries again after this long, doubled at each
#: try up to MAX_WAIT_MS: soon after a short import, a few messages a minute during a long one.
MIN_WAIT_MS = 1000
MAX_WAIT_MS = 8000
#: An import a stopping worker hands back waits this long: until then the worker's idle
#: threads, which take messages until they see the stop, would import it again at once.
STOPPED_WAIT_MS = 5000
#: How often each worker process drops the journals older than DROPIMPORT_JOURNAL_DAYS.
JOURNAL_PURGE_SECONDS = 3600

settings = Settings.from_env()
settings.home.make_private()  # also when started as `dramatiq worker.runtime.actors`


_importer: Importer | None = None
_importer_lock = threading.Lock()


def importer() -> Importer:
    """The process's one Importer, built on first use (after dramatiq forked the process):
    every worker thread must share its store, and with it the account locks."""
    global _importer
    with _importer_lock:
        if _importer is None:
            store = Store(settings.database_url)
            _importer = Importer(
                settings.home, store, progress_interval=settings.progress_ms / 1000,
                notifications=Notifications(Registry(settings.home), store, notify.send),
                reader_processes=settings.reader_processes,
                journal_days=settings.journal_days, secret_key=settings.secret_key)
    return _importer


_exporter: Exporter | None = None


def exporter() -> Exporter:
    """The process's one Exporter, on the Importer's store (its account locks)."""
    global _exporter
    shared = importer()
    with _importer_lock:
        if _exporter is None:
            _exporter = Exporter(settings.home, shared.store, shared.notifications,
                                 settings.secret_key)
    return _exporter


def late_files() -> LateFiles:
    """The process's late-file checker, sharing the Importer's store and notifications."""
    return LateFiles(importer().registry, importer().store, importer().notifications)


broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
broker.add_middleware(LogContext(), before=type(broker.middleware[0]))
broker.add_middleware(ProcessLogging(settings.log_format))
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Set by `dropimport worker` for its processes (see worker/metrics.py): the middleware
    # serves every process's metrics on one port. A bare `dramatiq worker.runtime.actors` has none.
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())
# "after" hooks run in reverse order: placed before Retries, DeadLetters sees its verdict.
broker.add_middleware(DeadLetters(importer), before=Retries)
broker.add_middleware(CurrentMessage())
broker.add_middleware(
    Chores()
    .add("late-file-checks", lambda: late_files().check(), settings.late_check_seconds)
    .add("journal-purge", lambda: importer().purge_journal(), JOURNAL_PURGE_SECONDS, delay=60))
broker.add_middleware(Heartbeat(settings.home.heartbeats, QUEUE))  # `dropimport health worker`
dramatiq.set_broker(broker)


@dramatiq.actor(
    actor_name=ACTOR,
    queue_name=QUEUE,
    # A store outage is retried with backoff; then the message goes to contact-imports.XQ
    # and the import is marked failed until `dropimport imports retry`.
    max_retries=settings.import_retries,
    min_backoff=settings.import_min_backoff_ms,
    max_backoff=settings.import_max_backoff_ms,
    time_limit=6 * 3600 * 1000,  # a several-million-row file must not be cut by dramatiq
    throws=(SchemaError,),  # a malformed event will not get better: dead-letter it at once
    notify_shutdown=True,  # a stopping worker interrupts its imports rather than wait for them
)
def import_file(event: FileEvent) -> None:
    try:
        importer().run(event, wait=False)
    except AccountBusy:
        message = CurrentMessage.get_current_message()
        assert message is not None  # the CurrentMessage middleware's, while an actor runs
        wait_for_account(message)
    except Shutdown:
        # Rolled back, its record queued again (Importer._stopped). Not a failed try: the
        # message goes back to RabbitMQ as it was, for the next worker.
        log.info("the worker is stopping: the import goes back to the queue")
        message = CurrentMessage.get_current_message()
        assert message is not None
        broker.enqueue(message.copy(), delay=STOPPED_WAIT_MS)


@dramatiq.actor(
    actor_name=EXPORT_ACTOR,
    queue_name=EXPORT_QUEUE,
    # A customer's server that cannot be reached is tried again with backoff (TryAgain); the
    # last attempt records the run failed and notifies it.
    max_retries=settings.export_retries,
    min_backoff=settings.export_min_backoff_ms,
    max_backoff=settings.export_max_backoff_ms,
    time_limit=6 * 3600 * 1000,
    throws=(SchemaError,),
)
def export_contacts(event: ExportEvent) -> None:
    message = CurrentMessage.get_current_message()
    assert message is not None  # the CurrentMessage middleware's, while an actor runs
    try:
        exporter().run(event, message.options.get("retries", 0) >= settings.export_retries)
    except AccountBusy:
        # An import of the account (the snapshot waits for it) or another attempt of the
        # same export is running.
        wait_for_account(message)
    except TryAgain as error:
        raise dramatiq.Retry(str(error)) from None


def wait_for_account(message: dramatiq.Message[Any]) -> None:
    """Hand `message` back to RabbitMQ for later: its thread goes to other accounts' files.

    Not a retry: a file that only waited for its account is never dead-lettered for it. The
    lock holder imports the account's older files first, so the order holds.
    """
    waited = message.options.get("waited_ms")  # the last wait; None the first time
    delay = min(waited * 2, MAX_WAIT_MS) if waited else MIN_WAIT_MS
    log.info("the account is busy with another import: trying again in %d ms", delay)
    broker.enqueue(message.copy(options={"waited_ms": delay}), delay=delay)


# E-mail and webhook, retried with backoff on their own queue (worker/notify.py says why).
notify = declare(
    broker, Delivery(Registry(settings.home), settings.smtp),
    settings.notify_retries, settings.notify_min_backoff_ms, settings.notify_max_backoff_ms,
)

# Each worker process imports this module as it boots: what it loaded is now its whole code.
interpreter.tune()
