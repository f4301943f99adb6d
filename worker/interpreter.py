"""The interpreter, tuned for imports: its garbage collector and its thread switching.

An import makes millions of small objects (cells, contacts, dicts) and no reference cycle, yet
by default the collector walks the young ones every 700 allocations and the whole heap
(SQLAlchemy, psycopg, dramatiq...) every hundred thousand: measured, a third of the importing
process's time. What was loaded at start is frozen out of the collector's walks and the young
are collected less often; cycles are still collected.

An import's threads that wait on the database (its writes, the reading process's fingerprint
lookups) need the interpreter at each step of sending a statement or reading its answer,
while another thread checks or applies rows: at the default switch interval (5 ms) they
waited that long at each step, and the database idled. Measured: a nightly re-upload 12.8 s
-> 9.9 s.
"""

import gc
import sys

#: Allocations between two collections of the youngest objects (default 700), then how many
#: collections of a generation before one of the next (default 10 and 10). Measured on the
#: writer's unpickling of chunks: 4.4 us a row by default, 1.8 with these, 1.7 with none.
THRESHOLDS = (100_000, 50, 1000)
#: Seconds a thread runs before another waiting for the interpreter gets it (default 0.005).
SWITCH_INTERVAL = 0.0005


def tune():
    """Tune this process for imports (once it has loaded its modules)."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL)
