"""Failed logins: an address that keeps failing is banned; a user under attack is slowed down.

Failures are counted per client address and per FTP user over a sliding window. An address
with `threshold` failures within `window` seconds is banned for `ban_seconds`, twice as long
at each repeat ban (up to a week); a ban is remembered for a day after it ends. There is no
account lockout: failures for one user, from however many addresses, only make the reply to
each further failure for that user slower (`slow_delay` instead of `delay`), so the owner, who
knows the password, still logs in at once while an attacker guesses at a crawl. A successful
login clears nothing: a customer who knows its own password must not be able to reset the count
of the guesses it makes at another's.

Pure bookkeeping with an injectable clock: the FTP handler asks, then replies and logs.
"""

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, Self

from schemas.settings import Settings

#: The longest ban, however often an address comes back.
MAX_BAN = 7 * 24 * 3600
#: How long after its end a ban still counts towards doubling the next one.
MEMORY = 24 * 3600


class Verdict(NamedTuple):
    """What one failed login leads to."""

    #: Seconds the address is banned for from now; 0 if this failure did not ban it.
    ban: float
    #: Seconds to wait before answering the failure.
    delay: float
    #: Whether this failure was the first one over the threshold for its user.
    user_slowed: bool


class _Ban(NamedTuple):
    until: float
    strikes: int  # bans of the address in a row, this one included


class Bans:
    """Failed logins per address and per user, and the addresses banned."""

    def __init__(self, threshold: int, window: float, ban_seconds: float, *, delay: float = 3.0,
                 slow_delay: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.window = window
        self.ban_seconds = ban_seconds
        self.delay = delay
        self.slow_delay = slow_delay
        self._clock = clock
        self._by_address: dict[str, deque[float]] = {}  # address -> times of its recent failures
        self._by_user: dict[str, deque[float]] = {}  # user -> times of its recent failures
        self._bans: dict[str, _Ban] = {}  # address -> _Ban
        self._next_sweep = clock() + window
        # Each FTP connection runs in a thread of its own.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Self:
        return cls(settings.ftp_ban_threshold, settings.ftp_ban_window, settings.ftp_ban_seconds,
                   **options)

    def banned(self, address: str) -> float:
        """Seconds left of the ban of `address`; 0 if it may try to log in."""
        with self._lock:
            ban = self._bans.get(address)
            return max(0.0, ban.until - self._clock()) if ban else 0.0

    def failed(self, address: str, user: str) -> Verdict:
        """Count a failed login of `user` from `address`; say what follows from it."""
        with self._lock:
            now = self._clock()
            self._sweep(now)
            by_user = self._recent(self._by_user, user, now)
            ban = 0
            if len(self._recent(self._by_address, address, now)) >= self.threshold:
                # The address starts afresh when its ban ends; a repeat ban lasts twice as long.
                del self._by_address[address]
                previous = self._bans.get(address)
                strikes = previous.strikes + 1 if previous and now - previous.until < MEMORY else 1
                ban = min(self.ban_seconds * 2 ** (strikes - 1), MAX_BAN)
                self._bans[address] = _Ban(now + ban, strikes)
            slowed = len(by_user) > self.threshold
            return Verdict(ban, self.slow_delay if slowed else self.delay,
                           len(by_user) == self.threshold + 1)

    def _recent(self, table: dict[str, deque[float]], key: str, now: float) -> deque[float]:
        """The failures of `key` within the window, this one included."""
        times = table.setdefault(key, deque())
        times.append(now)
        while times[0] <= now - self.window:
            times.popleft()
        return times

    def _sweep(self, now: float) -> None:
        """Forget what no longer counts, at most once a window: memory stays bounded."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.window
        for table in (self._by_address, self._by_user):
            for key in [key for key, times in table.items() if times[-1] <= now - self.window]:
                del table[key]
        for address in [a for a, ban in self._bans.items() if now - ban.until >= MEMORY]:
            del self._bans[address]
