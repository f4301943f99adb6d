"""The interpreter, tuned for imports: its garbage collector, its thread switching, its memory.

An import makes millions of small objects (cells, contacts, dicts) and no reference cycle, yet
by default the collector walks the young ones every 700 allocations and the whole heap
(SQLAlchemy, psycopg, dramatiq...) every hundred thousand: a large share of an import's time,
for no cycle found. What was loaded at start is frozen out of the collector's walks and the
young are collected less often; cycles are still collected.

An import's threads that wait on the database (its writes, the reading process's fingerprint
lookups) need the interpreter at each step of sending a statement or reading its answer,
while another thread checks or applies rows: at the default switch interval (5 ms) they
waited that long at each step, and the database idled.

An import's big buffers (a chunk's pickled bytes, its COPY texts: megabytes each, made in one
thread and freed in another) are mapped one by one and given back when freed. glibc's default
maps such blocks only until it sees one freed, then carves them from its heaps, which they
left fragmented: a long import's peak memory kept growing with its rows.
"""

import ctypes
import gc
import sys

#: Allocations between two collections of the youngest objects (default 700), then how many
#: collections of a generation before one of the next (default 10 and 10). With these, the
#: writer unpickles chunks nearly as fast as with no collection at all, and cycles still go.
THRESHOLDS = (100_000, 50, 1000)
#: Seconds a thread runs before another waiting for the interpreter gets it (default 0.005).
SWITCH_INTERVAL = 0.0005
#: Bytes from which a block is mapped on its own (glibc's M_MMAP_THRESHOLD, -3 for mallopt);
#: setting it keeps glibc from raising it.
MAP_FROM = 1 << 20
_M_MMAP_THRESHOLD = -3


def tune() -> None:
    """Tune this process for imports (once it has loaded its modules)."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL)
    _map_big_blocks()


def _map_big_blocks() -> None:
    # The process's own symbols, the C library's among them: ctypes.util.find_library would
    # run ldconfig at each start of a reading process.
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (or Windows): its own ways
        return
    mallopt(_M_MMAP_THRESHOLD, MAP_FROM)
