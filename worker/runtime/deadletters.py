"""What happens to an import whose message is dead-lettered (its retries are exhausted)."""

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dramatiq import Broker, MessageProxy, Middleware
from sqlalchemy.exc import SQLAlchemyError

from schemas import ACTOR

from .. import failure, spool
from . import metrics

if TYPE_CHECKING:
    from ..importer import Importer

log = logging.getLogger(__name__)


class DeadLetters(Middleware):
    """Marks the import failed, with the reason, once dramatiq gives up on its message.

    The mark is written beside the spooled file first, since the usual reason for giving up
    is a store that cannot be reached; the import record follows when the store answers.
    `dropimport imports retry ID` takes the import up again.
    """

    def __init__(self, importer: Callable[[], "Importer"]) -> None:
        self.importer = importer  # a callable returning the process's Importer

    def after_process_message(self, broker: Broker, message: MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        if (exception is None or not message.failed or not message.args
                or message.actor_name != ACTOR):
            return
        event = message.args[0]
        retries = message.options.get("retries", 0)
        reason = f"{failure.reason(exception)} (gave up after {retries} attempts)"
        metrics.IMPORTS.labels("failed").inc()
        try:
            importer = self.importer()
            spool.mark_failed(importer.home, event, reason)
            importer.record_failure(event, reason)
        except (OSError, SQLAlchemyError, KeyError, TypeError) as error:
            log.error("could not record the failure of message %s: %s", message.message_id,
                      failure.reason(error), exc_info=failure.redacted(error))
        log.error("import %s of account %s file %s failed: %s", event.get("import_id"),
                  event.get("account"), event.get("file"), reason)
