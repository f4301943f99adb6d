"""Account locks: the imports of one account run one at a time, across every worker."""

import fcntl
import threading
import zlib
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from sqlalchemy import Engine, func, select

#: Account locks of this process's threads on SQLite (fcntl locks cannot tell threads apart).
_thread_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
#: The first key of our PostgreSQL advisory locks, so that they never meet another app's.
LOCK_CLASS = 0x64726F70  # "drop"


class AccountBusy(Exception):
    """Another import holds the account (`Store.account_lock` without waiting)."""


class AccountLocks:
    """The account locks of a Store (its engine, and its lock file on SQLite)."""

    engine: Engine
    _lock_file: IO[bytes]  # SQLite: the file whose bytes are the locks

    @contextmanager
    def account_lock(self, account: str, wait: bool = True) -> Iterator[None]:
        """Hold `account` across transactions: its imports run one at a time, everywhere.

        With `wait` false, raise AccountBusy at once if another thread or process holds it.

        PostgreSQL: a session advisory lock, across every worker process and host, released
        by the server if the worker dies. SQLite (one host): a lock on one byte of a file
        beside the database, released by the kernel if the process dies, and a thread lock,
        since such locks belong to a process, not to a thread.
        """
        if self.engine.dialect.name == "postgresql":
            key = (LOCK_CLASS, func.hashtext(account))
            with self.engine.connect() as connection:
                if wait:
                    connection.execute(select(func.pg_advisory_lock(*key)))
                elif not connection.execute(select(func.pg_try_advisory_lock(*key))).scalar():
                    raise AccountBusy(account)
                connection.commit()
                try:
                    yield
                finally:
                    connection.execute(select(func.pg_advisory_unlock(*key)))
                    connection.commit()
            return
        offset = zlib.crc32(account.encode())
        if not _thread_locks[account].acquire(blocking=wait):
            raise AccountBusy(account)
        try:
            try:
                fcntl.lockf(self._lock_file, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB),
                            1, offset)
            except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: held elsewhere
                raise AccountBusy(account) from None
            try:
                yield
            finally:
                fcntl.lockf(self._lock_file, fcntl.LOCK_UN, 1, offset)
        finally:
            _thread_locks[account].release()
