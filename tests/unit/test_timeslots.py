from __future__ import annotations

from datetime import datetime, timedelta

from matcher.timeslots import BEIJING, find_slot, minutes_by_week, round_up, week_of


def bj(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 7, tzinfo=BEIJING) + timedelta(days=day, hours=hour, minutes=minute)


def test_iso_week_is_counted_in_beijing_time() -> None:
    sunday_late_utc = datetime(2026, 12, 13, 17, 0, tzinfo=BEIJING) - timedelta(hours=8)
    assert week_of(bj(6, 23)) == (2026, 50)
    assert week_of(bj(7, 1)) == (2026, 51)
    assert week_of(sunday_late_utc) == (2026, 50)


def test_minutes_split_over_a_week_boundary() -> None:
    assert minutes_by_week(bj(6, 23), bj(7, 1)) == {(2026, 50): 60.0, (2026, 51): 60.0}


def test_round_up_to_five_minutes() -> None:
    assert round_up(bj(0, 9, 3)) == bj(0, 9, 5)
    assert round_up(bj(0, 9, 5)) == bj(0, 9, 5)


def test_earliest_slot_skips_busy_time_and_respects_cap() -> None:
    search = find_slot(
        window=(bj(0, 9), bj(0, 18)),
        duration=timedelta(minutes=60),
        not_before=bj(-1, 0),
        availability=[(bj(0, 8), bj(0, 12))],
        busy=[(bj(0, 9), bj(0, 10, 30))],
        cap_minutes=240,
    )
    assert search.slot == (bj(0, 10, 30), bj(0, 11, 30))
    capped = find_slot(
        window=(bj(0, 9), bj(0, 18)),
        duration=timedelta(minutes=60),
        not_before=bj(-1, 0),
        availability=[(bj(0, 8), bj(0, 12))],
        busy=[(bj(0, 9), bj(0, 10, 30))],
        cap_minutes=120,
    )
    assert capped.slot is None
    assert capped.free_of_bookings


def test_no_slot_before_now() -> None:
    search = find_slot(
        window=(bj(0, 9), bj(0, 12)),
        duration=timedelta(minutes=60),
        not_before=bj(0, 10, 1),
        availability=[(bj(0, 8), bj(0, 12))],
        busy=[],
        cap_minutes=240,
    )
    assert search.slot == (bj(0, 10, 5), bj(0, 11, 5))
