"""The dramatiq actors. Thin: they hand the file event to the Importer.

This module is the worker process's entry point (`dropimport worker`, or the ecosystem's own
`dramatiq worker.actors`): it reads the settings once and sets the broker explicitly before
declaring the actor, so dramatiq never builds an implicit global broker.
"""

from functools import cache

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from schemas import ACTOR, QUEUE, SchemaError
from schemas.settings import Settings

from .importer import Importer

settings = Settings.from_env()
broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
dramatiq.set_broker(broker)


@cache
def importer():
    # Built on first use, in the worker process (after dramatiq forked it).
    return Importer.from_settings(settings)


@dramatiq.actor(
    actor_name=ACTOR,
    queue_name=QUEUE,
    max_retries=10,
    min_backoff=5_000,
    max_backoff=300_000,
    time_limit=6 * 3600 * 1000,  # a several-million-row file must not be cut by dramatiq
    throws=(SchemaError,),  # a malformed event will not get better: dead-letter it at once
)
def import_file(event):
    importer().run(event)
