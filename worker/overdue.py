"""Expected files: when each is due, which are late, and the alert raised once per due time.

A template may say when its file is expected: `"expected": {"cron": "0 6 * * *", "grace":
"2h"}`. A file counts for a scheduled time when it arrives within the grace before or after
it; a scheduled time passed by its grace with no such file makes the file late, due at the
scheduled time plus the grace. Before the first file, the account's creation stands for it.
"""

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict
from zoneinfo import ZoneInfo

from croniter import croniter
from prometheus_client import Counter

from dropimport.accounts import Registry, file_matches
from dropimport.packaging import packing

from . import spool

if TYPE_CHECKING:
    from .notify import Notifications, Silent
    from .write.store import Store

log = logging.getLogger(__name__)

LATE_FILES = Counter("dropimport_late_files_total",
                     "Expected files not received by their due time (one per due time)")

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")


class Late(TypedDict):
    """An expected file not received by its due time, as `late_files` finds it."""

    account: str
    file: str
    due: datetime
    last_received: datetime | None


def duration(text: str) -> timedelta:
    """The timedelta of a grace such as `90m`, `2h`, `1d` or `1h30m`."""
    match = _DURATION.match(text)
    assert match is not None  # the template schema's pattern of a grace
    days, hours, minutes = (int(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def missed(expected: dict[str, Any], last: datetime, now: datetime) -> datetime | None:
    """The due time of the latest scheduled time passed by its grace with no file within the
    grace around it, or None when nothing is late at `now`.

    `last` is when the file was last received (or, before the first, the account created).
    """
    grace = duration(expected["grace"])
    zone = ZoneInfo(expected.get("timezone", "UTC"))
    # croniter's get_prev is strict: a microsecond more counts a time due exactly now.
    start = (now - grace + timedelta(microseconds=1)).astimezone(zone)
    scheduled = croniter(expected["cron"], start).get_prev(datetime)
    if scheduled - grace <= last:
        return None
    return (scheduled + grace).astimezone(UTC)


def late_files(registry: Registry, store: "Store", now: datetime) -> list[Late]:
    """Every expected file late at `now`: dicts of account, file, due, last_received."""
    late: list[Late] = []
    for account in registry.list():
        name = account["name"]
        expecting = [t for t in registry.templates(name) if "expected" in t]
        if not expecting:
            continue
        # Received: recorded by an import, or still waiting in the spool for one.
        received = list(store.received(name).items()) + [
            (s.event["file"], datetime.fromisoformat(s.event["received_at"]))
            for s in spool.pending(registry.home, name)
        ]
        created = datetime.fromisoformat(account["created_at"])
        for template in expecting:
            # A compressed or encrypted upload counts as the file inside.
            last = max((at for file, at in received
                        if file_matches(template["file"], packing(file).inner)), default=None)
            due = missed(template["expected"], last or created, now)
            if due is not None:
                late.append({"account": name, "file": template["file"], "due": due,
                             "last_received": last})
    return sorted(late, key=lambda entry: entry["due"])


class LateFiles:
    """Raises each late file's alert once per due time, however many workers check."""

    def __init__(self, registry: Registry, store: "Store",
                 notifications: "Notifications | Silent",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.registry = registry
        self.store = store
        self.notifications = notifications
        self.clock = clock

    def check(self) -> list[Late]:
        """One pass: log, count and notify each late file not alerted yet; return them."""
        raised = []
        for late in late_files(self.registry, self.store, self.clock()):
            due = late["due"].isoformat()
            if not self.store.raise_once(f"late:{late['account']}:{late['file']}:{due}",
                                         late["account"]):
                continue
            last = late["last_received"]
            log.warning("late file: %s of account %s not received by %s (last received %s)",
                        late["file"], late["account"], due, last.isoformat() if last else "never")
            LATE_FILES.inc()
            self.notifications.late(late)
            raised.append(late)
        return raised
