"""Completion markers: a file whose template names one is held until `<file><marker>` arrives.

A customer whose system cannot upload atomically says when a file is complete by uploading a
small marker after it (`contacts.csv`, then `contacts.csv.done`). The marker may announce what
the worker must check, one `key=value` a line:

    rows=1200
    sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

Everything here is pure: the watcher passes the arrivals and a lookup of the markers in, and
does the file operations itself.
"""

import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from .incoming import Arrival

ROWS = re.compile(r"[0-9]+")
SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class Sorting(NamedTuple):
    """What to do with the arrivals in incoming/."""

    #: (arrival, its marker's arrival or None), in arrival order: spool and publish these.
    ready: list
    #: Arrivals held until their marker arrives.
    held: list
    #: (arrival, why): remove these.
    discarded: list


def marked_file(arrival: Arrival, marker_of: Callable[[str, str], str | None]) -> str | None:
    """The data file name `arrival` is the completion marker of, or None."""
    name = arrival.file
    for end in range(1, len(name)):
        if name[end] == "." and marker_of(arrival.account, name[:end]) == name[end:]:
            return name[:end]
    return None


def sort_out(arrivals: Iterable[Arrival],
             marker_of: Callable[[str, str], str | None]) -> Sorting:
    """Sort `arrivals` (oldest first) into ready, held and discarded.

    `marker_of(account, file)` is the completion marker of the file's template, or None. A marker
    completes the latest upload of its file that arrived before it; an earlier upload of the same
    name that never got its marker was superseded, so it is discarded rather than imported
    incomplete.
    """
    ready: list[tuple[Arrival, Arrival | None]] = []
    discarded: list[tuple[Arrival, str]] = []
    # (account, preview, file) -> the uploads of that file waiting for a marker (a marker
    # in dryrun/ completes a file of dryrun/)
    waiting: dict[tuple[str, bool, str], list[Arrival]] = {}
    for arrival in arrivals:
        data_file = marked_file(arrival, marker_of)
        if data_file is not None:
            uploads = waiting.pop((arrival.account, arrival.preview, data_file), [])
            if not uploads:
                discarded.append((arrival, f"no upload of {data_file} is waiting for it"))
                continue
            *superseded, complete = uploads
            discarded += [
                (old, f"superseded by import {complete.import_id} before its marker arrived")
                for old in superseded
            ]
            ready.append((complete, arrival))
        elif marker_of(arrival.account, arrival.file):
            waiting.setdefault((arrival.account, arrival.preview, arrival.file), []
                               ).append(arrival)
        else:
            ready.append((arrival, None))
    ready.sort(key=lambda pair: pair[0].import_id)
    held = sorted((a for uploads in waiting.values() for a in uploads), key=lambda a: a.import_id)
    return Sorting(ready, held, discarded)


def announced(text: str) -> tuple[dict[str, Any], list[str]]:
    """What a marker announces, for the file event's `expected`, and the lines it ignored.

    Only `rows=N` and `sha256=HEX` are checks; other lines (a timestamp, "OK") are common in
    markers and ignored. A check whose value is malformed is ignored too, and reported.
    """
    expected: dict[str, Any] = {}
    ignored: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "rows" and ROWS.fullmatch(value):
            expected["rows"] = int(value)
        elif key == "sha256" and SHA256.fullmatch(value):
            expected["sha256"] = value.lower()
        elif key in ("rows", "sha256"):
            ignored.append(line.strip())
    return expected, ignored
