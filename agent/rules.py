"""What an account may upload (the names its templates expect, how many files an hour) and
delete.

A template's `file` is the name it imports; one holding `*`, `?` or `[` is a glob pattern
(`contacts-*.csv`); it also takes the file compressed or encrypted, as its options say
(dropimport/packaging.py). A template with a completion marker also expects `<file><marker>`.
Pure but for `name_refusal`, which reads the account's templates, and `rate_refusal`, which
counts and logs a refusal: the FTP and SFTP doors ask, then reply.
"""

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from dropimport import packaging
from dropimport.accounts import Registry, file_matches
from dropimport.packaging import packing
from schemas import Template
from schemas import spool as layout
from schemas.settings import Home

from . import metrics

log = logging.getLogger(__name__)


def is_expected(name: str, templates: Iterable[Template]) -> bool:
    """Whether an upload named `name` has a template among `templates`, as it is named or as
    the file inside a compressed or encrypted one (packaging.packing), or is the completion
    marker of such a file.

    Never a name the spool keeps for the files it adds beside an upload (`event.json`, a
    dot-name), which a glob such as `*` would match: the upload would take their place.
    """
    if layout.is_pipeline_file(name):
        return False
    for template in templates:
        names = [name]
        marker = template.get("completion", {}).get("marker")
        if marker and name.endswith(marker) and len(name) > len(marker):
            names.append(name[:-len(marker)])
        if any(file_matches(template["file"], n)
               or file_matches(template["file"], packing(n).inner) for n in names):
            return True
    return False


def preview_of(home: Home, account: str, path: str) -> bool | None:
    """Where an upload to the local `path` goes: False at the top of the account's root (an
    import), True into its dryrun/ (a preview: compared, nothing changed), None elsewhere
    (refused)."""
    folder = os.path.realpath(os.path.dirname(path))
    if folder == os.path.realpath(home.ftp_root(account)):
        return False
    if folder == os.path.realpath(home.dryrun(account)):
        return True
    return None


def deletable(home: Home, account: Mapping[str, Any], path: str) -> bool:
    """Whether the login of `account` (its document, defaults applied) may delete the local
    `path`: a file of its exports/ (its system downloads an export, then deletes it), or of its
    reports/ if it `can_delete_reports`. Never a folder."""
    if not os.path.isfile(path):
        return False
    folder = os.path.realpath(os.path.dirname(path))
    name = account["name"]
    return folder == os.path.realpath(home.exports(name)) or (
        account["can_delete_reports"] and folder == os.path.realpath(home.reports(name)))


#: Why a deletion is refused (each door adds its code: FTP's 550).
UNDELETABLE = ("only the files of exports/ may be deleted here (and those of reports/, by "
               "accounts allowed to)")


#: Why an upload elsewhere is refused (each door adds its code: FTP's 550).
ELSEWHERE = "upload at the top of your folder (or into dryrun/ to preview)"


def name_refusal(registry: Registry, account: str, name: str) -> str | None:
    """Why `account` may not upload a file named `name`, or None if a template expects it."""
    template = registry.template(account, name)
    if template is not None:  # the usual case: one file read
        return packaging.refusal(template, name)
    templates = registry.templates(account)
    return None if is_expected(name, templates) else refusal(name, templates)


def expected_names(templates: Sequence[Template], limit: int = 10) -> str:
    """The names `templates` expect, as a refusal says them: `contacts.csv (+ .done)`."""
    names = []
    for template in templates[:limit]:
        marker = template.get("completion", {}).get("marker")
        names.append(f"{template['file']} (+ {marker})" if marker else template["file"])
    return ", ".join(names) + (", ..." if len(templates) > limit else "")


def refusal(name: str, templates: Sequence[Template]) -> str:
    """Why an upload named `name` is refused when no template expects it (each door adds its
    code: FTP's 553)."""
    if not templates:
        return f"{name!r} is not expected here: this account has no import template yet."
    return f"{name!r} is not expected here; upload {expected_names(templates)}"


class Admission(NamedTuple):
    """Whether one more upload of an account is admitted now."""

    admitted: bool
    #: Seconds until the next upload would be admitted (0 when admitted).
    retry_after: float
    #: Whether this refusal is the account's first for a window: log it.
    first_refusal: bool

    def refusal(self, limit: int) -> str:
        """Why the upload is refused (each door adds its code: FTP's 450)."""
        minutes = math.ceil(self.retry_after / 60)
        return (f"Upload limit reached: {limit} files an hour for this account; "
                f"upload again in {minutes} minute{'s' if minutes > 1 else ''}.")


class UploadRate:
    """The uploads of each account in the last `window` seconds (a sliding window)."""

    def __init__(self, window: float = 3600,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._uploads: dict[str, deque[float]] = {}  # account -> times of its recent uploads
        self._refused: dict[str, float] = {}  # account -> time of the refusal last logged
        # Each FTP connection runs in a thread of its own.
        self._lock = threading.Lock()

    def admit(self, account: str, limit: int) -> Admission:
        """Count an upload of `account` if fewer than `limit` came within the window."""
        with self._lock:
            now = self._clock()
            times = self._uploads.setdefault(account, deque())
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) < limit:
                times.append(now)
                return Admission(True, 0.0, False)
            last = self._refused.get(account)
            first = last is None or now - last >= self.window
            if first:
                self._refused[account] = now
            # The next upload is admitted once enough of the recent ones leave the window.
            return Admission(False, times[len(times) - limit] + self.window - now, first)


def rate_refusal(uploads: UploadRate, account: str, limit: int, protocol: str) -> str | None:
    """Why one more upload of `account` is refused now (its `limit` an hour reached), counted
    and, at the first refusal of a window, logged; None when admitted (and counted in)."""
    admission = uploads.admit(account, limit)
    if admission.admitted:
        return None
    metrics.REFUSED.labels(protocol, "rate").inc()
    if admission.first_refusal:
        log.warning("account %s reached its %d uploads an hour: uploads refused for %d s",
                    account, limit, admission.retry_after)
    return admission.refusal(limit)
