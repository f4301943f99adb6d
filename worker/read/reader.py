"""Reading a spooled file ahead of the writing: its dialect, its plan, its rows by chunks.

The rows are read and checked while the database writes the chunks before them. A big file
is read in a process of its own, so that reading and writing each get a core; a small one in
a thread, which costs no process start (an upload of a hundred rows is imported in
milliseconds). The process also looks up the fingerprints of the contacts its rows match, so
that a row that last wrote its contact is not converted again (a nightly re-upload).
"""

import io
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from schemas import Template

from ..runtime import interpreter
from ..write.fingerprints import fingerprints as stored_fingerprints
from . import csvfile
from .readahead import ahead
from .rows import (
    Chunk,
    Conversions,
    Converted,
    Converting,
    Fingerprints,
    by_columns,
    chunks,
    conversions,
)
from .template import HeaderMismatch, Plan, plan_for
from .unpack import Unpacking, unpacked

#: Files from this size on are read in a process of their own.
SEPARATE_PROCESS_BYTES = 8 << 20
#: The reading process's lower priority (os.nice).
NICENESS = 10

#: What `produce` yields: the Dialect, the columns (None: no rows), the Chunks. `reading`
#: yields them as Any: which is which goes by their order, not by their type.
Item = csvfile.Dialect | tuple[str, ...] | None | Chunk


def produce(path: Path, template: Template, size: int, fingerprints: Fingerprints | None = None,
            processes: int = 1, unpacking: Unpacking | None = None) -> Iterator[Item]:
    """Yield the file's Dialect, then its columns (None when it has no rows), then its Chunks.

    HeaderMismatch is raised after the Dialect, so that the record names the encoding.
    `fingerprints` looks up the stored fingerprints of match key values (rows.chunks). With
    `processes` above one, the rows are converted in that many processes (`converting`).
    A compressed or encrypted file is read through `unpacking` (unpack.unpacked).
    """
    fmt = template["format"]
    opened = partial(unpacked, path, unpacking) if unpacking else None
    with csvfile.reading(path, fmt["encoding"], fmt["delimiter"], opened) as (dialect, rows):
        yield dialect
        plan = planned(template, dialect, rows)
        yield plan.columns if plan else None
        if plan is None:
            return
        with converting(plan, processes) as convert:
            for chunk in chunks(plan, rows, size, fingerprints, convert,
                                processes if convert else 0, rows.bytes_read):
                chunk.bytes_read = rows.consumed()
                # Known once the rows are read to the end, as they are for the last chunk.
                chunk.cut = plan.cut(rows.unfinished)
                yield chunk


@contextmanager
def converting(plan: Plan, processes: int) -> Iterator[Converting | None]:
    """Yield what converts chunks of rows of `plan` in `processes` processes of their own
    (rows.chunks), or None for fewer than two: the rows are then converted where they are
    read.

    Reading a file is checking and converting its cells, nearly all of it: the rows are read
    and put in order here, and converted meanwhile, a chunk at a time, on the other cores.
    """
    if processes < 2:
        yield None
        return
    # New interpreters rather than forks: this process's lookups run in a thread of their own.
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_converting,
                             initargs=(plan.template, plan.columns, plan.encoding)) as pool:

        def convert(rows: list[tuple[int, list[str]]]) -> Callable[[], list[Converted]]:
            return pool.submit(_convert, rows).result

        yield convert


_conversions: Conversions | None = None  # a converting process's (`_start_converting`)


def _start_converting(template: Template, columns: tuple[str, ...], encoding: str) -> None:
    global _conversions
    interpreter.tune()
    # The columns as the file's header: the one empty cell that a trailing delimiter leaves
    # is what plan_for trims.
    _conversions = conversions(plan_for(template, [*columns, ""], encoding))


def _convert(rows: list[tuple[int, list[str]]]) -> list[Converted]:
    assert _conversions is not None  # set by _start_converting, the pool's initializer
    return by_columns(_conversions, rows)


def planned(template: Template, dialect: csvfile.Dialect, rows: csvfile.Rows) -> Plan | None:
    """The Plan of a file, its header read from `rows` (csvfile.Rows) if it has one; None for
    a file of no rows."""
    if template["header"] is False:
        return plan_for(template, None, dialect.encoding)
    try:
        first = rows.header()
    except csvfile.LongHeader as error:
        raise HeaderMismatch(str(error)) from None
    if first is None:
        return None
    try:
        return plan_for(template, first[1], dialect.encoding)
    except HeaderMismatch as error:
        raise HeaderMismatch(f"line {first[0]}: {error}") from None


@contextmanager
def reading(path: Path, template: Template, size: int, separate: bool = False,
            store: tuple[str, str] | None = None, processes: int = 1,
            unpacking: Unpacking | None = None) -> Iterator[Iterator[Any]]:
    """Yield the items of `produce`, read ahead: in a process of its own when `separate`.

    That process looks up fingerprints in `store`, if given: (the URL of the contacts store,
    the account), and has the rows converted in `processes` processes when more than one.
    """
    if not separate:
        with ahead(produce(path, template, size, unpacking=unpacking)) as items:
            yield items
        return
    # A new interpreter rather than a fork: the worker's other threads may hold locks.
    receiving, sending = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.read.reader", str(sending), str(size), str(path)],
        stdin=subprocess.PIPE, pass_fds=(sending,),
    )
    os.close(sending)
    connection = Connection(receiving, writable=False)
    try:
        assert process.stdin is not None  # stdin=PIPE
        # On its standard input, never its command line: `unpacking` may hold a secret key.
        process.stdin.write(json.dumps({"template": template, "store": store,
                                           "processes": processes,
                                           "unpacking": unpacking}).encode())
        process.stdin.close()
        # Read ahead as sent, unpickled in turn: a chunk's objects take thrice its bytes.
        with ahead(_received(connection, process)) as received:
            yield map(_unpickled, received)
    finally:
        connection.close()
        process.kill()
        process.wait()


class _Failed:
    def __init__(self, error: Exception) -> None:
        self.error = error


def _send(connection: Connection, item: object) -> None:
    """Send `item` pickled without a memo, as `_unpickled` reads it back.

    A chunk is tens of thousands of objects, nearly all distinct: remembering each of them,
    which `connection.send` does, costs several times the pickling itself and saves nothing.
    """
    pickled = io.BytesIO()
    pickler = pickle.Pickler(pickled, pickle.HIGHEST_PROTOCOL)
    pickler.fast = True  # no memo: what is sent holds no object twice that matters, no cycle
    pickler.dump(item)
    connection.send_bytes(pickled.getbuffer())


def _received(connection: Connection, process: subprocess.Popen[bytes]) -> Iterator[bytes]:
    """Each item the reading process sends, pickled, until the empty message that ends them."""
    while True:
        try:
            pickled = connection.recv_bytes()
        except EOFError:
            raise RuntimeError(
                f"the process reading the file stopped (exit code {process.wait()})"
            ) from None
        if not pickled:
            return
        yield pickled


def _unpickled(pickled: bytes) -> Item:
    item = pickle.loads(pickled)
    if type(item) is _Failed:
        raise item.error
    return item


def main(descriptor: str, size: str, path: str) -> None:
    """The reading process: every item of `produce`, then an empty message, or the error
    that stopped it."""
    interpreter.tune()
    # The reading keeps ahead of the writing, whose database work is the import's longest
    # path: on a busy machine, the database and the applying go first.
    os.nice(NICENESS)
    connection = Connection(int(descriptor), readable=False)
    spec = json.load(sys.stdin)
    template = spec["template"]
    try:
        with ExitStack() as stack:
            fingerprints = lookup = None
            if spec["store"]:
                # The store is (url, account): mypy takes a starred list for every parameter.
                lookup = stack.enter_context(stored_fingerprints(
                    *spec["store"], template["match_on"]))  # type: ignore[call-arg]
            if lookup is not None:
                # A thread of its own waits for the database while the rows are checked.
                asking = stack.enter_context(ThreadPoolExecutor(1, "fingerprints"))

                def fingerprints(values: set[Any]) -> Callable[[], dict[Any, int]]:
                    return asking.submit(lookup, values).result

            for item in produce(Path(path), template, int(size), fingerprints,
                                spec["processes"], spec["unpacking"]):
                _send(connection, item)
        connection.send_bytes(b"")
    except BrokenPipeError:  # the import stopped: nobody is reading any more
        pass
    except Exception as error:  # handed over to the importing process
        _send(connection, _Failed(error))
    finally:
        connection.close()


if __name__ == "__main__":
    # Run as worker.read.reader, not as __main__, so that what it sends unpickles in the worker.
    from worker.read.reader import main as reading_main

    reading_main(*sys.argv[1:])
