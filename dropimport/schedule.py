"""Cron schedules in a time zone: pull mode's sources and the exports run on them."""

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter


class ScheduleError(ValueError):
    """A schedule or time zone is not usable; the message says why, in one line."""


def zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {timezone!r}: use a name like Europe/Paris") \
            from None


def check_schedule(schedule: str, timezone: str = "UTC") -> None:
    """Raise ScheduleError unless `schedule` is a cron expression croniter reads."""
    zone(timezone)
    if not croniter.is_valid(schedule):
        raise ScheduleError(
            f"bad schedule {schedule!r}: write a cron expression such as '0 6 * * *' "
            "(minute hour day-of-month month day-of-week)"
        )


def next_run(planned: Mapping[str, Any], after: datetime) -> datetime:
    """The first time of `planned`'s `schedule` (in its `timezone`) strictly after `after`
    (an aware datetime)."""
    local = after.astimezone(zone(planned.get("timezone", "UTC")))
    return croniter(planned["schedule"], local).get_next(type(after)).astimezone(after.tzinfo)


def previous_run(planned: Mapping[str, Any], at: datetime) -> datetime:
    """The latest time of `planned`'s `schedule` (in its `timezone`) at or before `at` (an
    aware datetime): the run due at `at`."""
    # croniter's get_prev is strictly before its start: one microsecond on includes `at`.
    local = (at + timedelta(microseconds=1)).astimezone(zone(planned.get("timezone", "UTC")))
    return croniter(planned["schedule"], local).get_prev(type(at)).astimezone(at.tzinfo)
