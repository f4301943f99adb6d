"""Publishing file events and export runs to RabbitMQ through dramatiq, with publisher
confirms."""

import logging
from collections.abc import Mapping
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from schemas import ACTOR, EXPORT_ACTOR, EXPORT_QUEUE, QUEUE, ExportEvent, FileEvent, validate
from schemas.settings import redact

log = logging.getLogger(__name__)


class Publisher:
    """Sends one dramatiq message per file event to the `contact-imports` queue, and one per
    export run to `contact-exports`."""

    def __init__(self, broker_url: str) -> None:
        self.url = broker_url
        # No middleware: the worker's middleware (retries, limits) acts on delivery; an
        # enqueue only needs the message to be confirmed by RabbitMQ.
        self.broker = RabbitmqBroker(url=broker_url, confirm_delivery=True, middleware=[])

    def __str__(self) -> str:
        return f"RabbitMQ at {redact(self.url)}"

    def publish(self, event: FileEvent) -> None:
        """Publish `event`; returns once RabbitMQ confirmed it, raises if it could not.

        Publishing the same event twice is safe: the worker imports an import id once.
        """
        self._enqueue("file-event", QUEUE, ACTOR, event)
        log.info(
            "published import %s of %s for account %s",
            event["import_id"], event["file"], event["account"],
        )

    def publish_export(self, event: ExportEvent) -> None:
        """Publish the export run `event`; returns once RabbitMQ confirmed it, raises if it
        could not.

        Publishing the same run twice is safe: the worker runs a run id once.
        """
        self._enqueue("export-event", EXPORT_QUEUE, EXPORT_ACTOR, event)
        log.info("published export run %s (planned for %s)", event["run_id"],
                 event["planned_for"])

    def _enqueue(self, schema: str, queue: str, actor: str, event: Mapping[str, Any]) -> None:
        validate(schema, event)
        message: dramatiq.Message[None] = dramatiq.Message(  # the actors return None
            queue_name=queue, actor_name=actor, args=(event,), kwargs={}, options={}
        )
        self.broker.enqueue(message)

    def close(self) -> None:
        self.broker.close()
