"""The logging of the worker processes dramatiq starts, and the context of their lines."""

import contextlib
import threading
from typing import Any

from dramatiq import Broker, MessageProxy, Middleware

from dropimport import logs
from dropimport.logs import configure_logging


class ProcessLogging(Middleware):
    """Configures the logging of each worker process when it boots: worker.runtime.actors is the
    entry point of these processes, as the CLI is the entry point of the other commands."""

    def __init__(self, log_format: str | None) -> None:
        self.log_format = log_format

    def after_process_boot(self, broker: Broker) -> None:
        configure_logging(self.log_format)


class LogContext(Middleware):
    """Every line logged while a worker thread handles a file event, dramatiq's own included
    (failures, retries, dead letters), names its account, import and file.

    Placed first, so that its "before" hook runs first and its "after" hooks last.
    """

    def __init__(self) -> None:
        self._current = threading.local()  # each worker thread handles one message at a time

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        event = message.args[0] if message.args and isinstance(message.args[0], dict) else {}
        self._current.stack = stack = contextlib.ExitStack()
        stack.enter_context(logs.context(**{key: event.get(key) for key in logs.FIELDS}))

    def after_process_message(self, broker: Broker, message: MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        stack = getattr(self._current, "stack", None)
        if stack is not None:
            self._current.stack = None
            stack.close()

    after_skip_message = after_process_message
