"""Python's garbage collector, tuned for imports.

An import makes millions of small objects (cells, contacts, dicts) and no reference cycle, yet
by default the collector walks the young ones every 700 allocations and the whole heap
(SQLAlchemy, psycopg, dramatiq...) every hundred thousand: measured, a third of the importing
process's time. What was loaded at start is frozen out of the collector's walks and the young
are collected less often; cycles are still collected.
"""

import gc

#: Allocations between two collections of the youngest objects (default 700), then how many
#: collections of a generation before one of the next (default 10 and 10). Measured on the
#: writer's unpickling of chunks: 4.4 us a row by default, 1.8 with these, 1.7 with none.
THRESHOLDS = (100_000, 50, 1000)


def tune():
    """Tune this process's collector for imports (once it has loaded its modules)."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
