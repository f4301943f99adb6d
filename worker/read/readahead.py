"""Reading ahead: the next chunks of a file are read and checked while the database writes.

The reading runs in a thread of its own, at most `depth` chunks ahead of the writing, so that
memory stays bounded. Python's interpreter lock lets the two overlap whenever the writing
waits on the database, which is most of its time.
"""

import contextvars
import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

_DONE = object()

_Item = TypeVar("_Item")


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


@contextmanager
def ahead(iterable: Iterable[_Item], depth: int = 2) -> Iterator[Iterator[_Item]]:
    """Yield an iterator over `iterable`, which a thread consumes up to `depth` items ahead.

    An exception raised by `iterable` is raised by the iterator where it happened; leaving
    the block early stops the thread.
    """
    items: queue.Queue[Any] = queue.Queue(maxsize=depth)  # the items, a _Failed, _DONE
    stopping = threading.Event()

    def put(item: object) -> bool:
        while not stopping.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fill() -> None:
        try:
            for item in iterable:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed over to the consuming thread
            put(_Failed(error))

    def drain() -> Iterator[_Item]:
        while (item := items.get()) is not _DONE:
            if type(item) is _Failed:
                raise item.error
            yield item

    # The reader logs with the import's context (account, import id, file).
    thread = threading.Thread(target=contextvars.copy_context().run, args=(fill,),
                              name="read-ahead", daemon=True)
    thread.start()
    try:
        yield drain()
    finally:
        stopping.set()
        thread.join()
