from __future__ import annotations

from streams.lagstatus import Sample, Status, StatusTracker, status_of


def window(*rows: tuple[int | None, int]) -> list[Sample]:
    return [Sample(float(i * 10), committed, end) for i, (committed, end) in enumerate(rows)]


def test_caught_up_is_ok() -> None:
    assert status_of(window((5, 5), (9, 9))) is Status.OK


def test_moving_with_shrinking_lag_is_ok() -> None:
    assert status_of(window((0, 10), (5, 12), (11, 13))) is Status.OK


def test_lag_growing_while_offsets_move_is_warning() -> None:
    assert status_of(window((0, 10), (2, 15), (4, 22))) is Status.WARNING


def test_offsets_not_moving_with_lag_is_stalled() -> None:
    assert status_of(window((3, 10), (3, 10), (3, 12))) is Status.STALLED


def test_never_committed_with_lag_is_stopped() -> None:
    assert status_of(window((None, 4), (None, 6))) is Status.STOPPED


def test_tracker_slides_its_window() -> None:
    tracker = StatusTracker(size=3)
    statuses = [tracker.add("needs", 0, s) for s in window((3, 10), (3, 10), (3, 10), (8, 10))]
    assert statuses == [Status.OK, Status.STALLED, Status.STALLED, Status.OK]


def test_one_sample_of_a_fresh_partition_is_not_yet_stopped() -> None:
    assert status_of(window((None, 1))) is Status.OK
