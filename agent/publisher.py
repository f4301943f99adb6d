"""Publishing file events to RabbitMQ through dramatiq, with publisher confirms."""

import logging

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from schemas import ACTOR, QUEUE, FileEvent, validate
from schemas.settings import redact

log = logging.getLogger(__name__)


class Publisher:
    """Sends one dramatiq message per file event to the `contact-imports` queue."""

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
        validate("file-event", event)
        message: dramatiq.Message[None] = dramatiq.Message(  # import_file returns None
            queue_name=QUEUE, actor_name=ACTOR, args=(event,), kwargs={}, options={}
        )
        self.broker.enqueue(message)
        log.info(
            "published import %s of %s for account %s",
            event["import_id"], event["file"], event["account"],
        )

    def close(self) -> None:
        self.broker.close()
