"""The Redis unit of work against the reference ``InMemoryStore``, the engine over both,
racing workers, crash atomicity and an unreachable Redis."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from matcher.engine import Engine
from matcher.exceptions import StoreUnavailableError
from matcher.replay import Line, apply_event, reject, replay
from matcher.rules import check_rules
from matcher.state import Booking, InMemoryStore, NeedRecord, Store, VolunteerRecord
from matcher.timeslots import BEIJING
from schemas.codec import dump_output, parse_input
from schemas.events import InputEvent, OutputEvent
from schemas.exceptions import InvalidEventError
from streams.redis_store import (
    EventAlreadyCommittedError,
    RedisStore,
    RedisUnitOfWork,
    SwitchableStore,
    decode_booking,
    decode_need,
    decode_volunteer,
    encode_booking,
    encode_need,
    encode_volunteer,
)
from tests.fakes import DEFAULT_KEYWORDS, KeywordSkillModel, line
from tests.fakes import need as need_event
from tests.fakes import t as dev_time
from tests.fakes import volunteer as volunteer_event
from tests.unit.test_rules_property import weeks

integration = pytest.mark.integration
DEV_WEEK = Path(__file__).resolve().parent.parent / "data" / "dev_week.jsonl"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in the dev week (2026-12-07 is a Monday), Beijing time."""
    return datetime(2026, 12, 7, tzinfo=BEIJING) + timedelta(days=day, hours=hour, minutes=minute)


def vol(
    vid: str,
    *,
    skills: dict[str, float] | None = None,
    served: tuple[str, ...] = ("c1",),
    cap: float = 240.0,
    withdrawn: bool = False,
) -> VolunteerRecord:
    return VolunteerRecord(
        volunteer_id=vid,
        kind="resident",
        community=served[0],
        served=served,
        availability=((at(0, 8), at(0, 20)), (at(1, 8), at(1, 20))),
        cap_minutes=cap,
        skills=skills if skills is not None else {"repair.electrical": 0.8},
        withdrawn=withdrawn,
    )


def need_rec(
    nid: str,
    *,
    urgency: str = "normal",
    posted: datetime | None = None,
    types: tuple[str, ...] = ("repair.electrical",),
    community: str = "c1",
    window: tuple[datetime, datetime] | None = None,
    duration: int = 60,
) -> NeedRecord:
    return NeedRecord(
        need_id=nid,
        community=community,
        window=window or (at(0, 9), at(0, 12)),
        duration_minutes=duration,
        headcount=1,
        urgency=urgency,
        posted_at=posted or at(-1, 12),
        posted_event_id=f"ev-{nid}",
        types=tuple((t, 0.9) for t in types),
    )


def booking(aid: str, nid: str, vid: str, start: datetime, minutes: int = 60) -> Booking:
    return Booking(aid, nid, vid, start, start + timedelta(minutes=minutes))


def snapshot(client: redis.Redis) -> dict[Any, Any]:
    return {k: (client.dump(k), client.ttl(k) > 0) for k in client.scan_iter()}


def client_like(client: redis.Redis) -> redis.Redis:
    """A second client (own connections) on the same server and database."""
    kwargs = client.connection_pool.connection_kwargs
    return redis.Redis(host=kwargs["host"], port=kwargs["port"], db=kwargs["db"])


# --- serialisation ------------------------------------------------------------------------

ZONES = [BEIJING, UTC, timezone(timedelta(hours=-5, minutes=-30)), timezone(timedelta(hours=14))]
aware = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.sampled_from(ZONES)
).map(lambda d: d.replace(fold=0))
# (fold means nothing with a fixed offset and ISO 8601 cannot carry it.)
names = st.text(min_size=0, max_size=12)


def exact(value: Any) -> Any:
    """A form where two datetimes are equal only with the same offset and digits."""
    if isinstance(value, datetime):
        return ("datetime", value.isoformat())
    if is_dataclass(value):
        return tuple(exact(getattr(value, f.name)) for f in fields(value))
    if isinstance(value, tuple | list):
        return tuple(exact(v) for v in value)
    if isinstance(value, frozenset):
        return frozenset(exact(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, exact(v)) for k, v in value.items())  # order kept too
    return value


def same_times(a: object, b: object) -> None:
    """Equal as dataclasses (instants) AND exactly (offsets, digits, dict order)."""
    assert a == b
    assert exact(a) == exact(b)


@settings(max_examples=200, deadline=None)
@given(
    names,
    names,
    st.lists(names, max_size=3),
    st.lists(st.tuples(aware, aware), max_size=3),
    st.floats(min_value=0.01, max_value=1e6),
    st.dictionaries(names, st.floats(0, 1), max_size=3),
    st.booleans(),
)
def test_volunteer_round_trip(
    vid: str,
    community: str,
    served: list[str],
    windows: list[tuple[datetime, datetime]],
    cap: float,
    skills: dict[str, float],
    withdrawn: bool,
) -> None:
    record = VolunteerRecord(
        vid, "micro_org", community, tuple(served), tuple(windows), cap, skills, withdrawn
    )
    same_times(decode_volunteer(encode_volunteer(record)), record)


@settings(max_examples=200, deadline=None)
@given(
    names,
    aware,
    aware,
    st.integers(15, 1440),
    st.lists(st.tuples(names, st.floats(0, 1)), max_size=3),
    st.frozensets(names, max_size=3),
    st.none() | st.tuples(st.integers(1, 20), names, st.booleans()),
    st.booleans(),
)
def test_need_round_trip(
    nid: str,
    start: datetime,
    posted: datetime,
    duration: int,
    types: list[tuple[str, float]],
    declined: frozenset[str],
    last: tuple[int, str, bool] | None,
    cancelled: bool,
) -> None:
    record = NeedRecord(
        nid,
        "社区",
        (start, start + timedelta(hours=3)),
        duration,
        2,
        "high",
        posted,
        "e-1",
        tuple(types),
        cancelled,
        declined,
        last,
        support=tuple(types[:1]),
    )
    decoded = decode_need(encode_need(record))
    assert decoded.support == record.support
    same_times(decoded, record)
    assert encode_need(decoded) == encode_need(record)  # same record, same bytes


@settings(max_examples=100, deadline=None)
@given(
    names,
    aware,
    st.sampled_from(["active", "accepted", "completed", "cancelled", "declined"]),
    st.none() | st.integers(1, 5),
)
def test_booking_round_trip(aid: str, start: datetime, status: Any, rating: int | None) -> None:
    record = Booking(aid, "n", "v", start, start + timedelta(minutes=45), status, rating)
    same_times(decode_booking(encode_booking(record)), record)


# --- the store contract, against InMemoryStore and the unit of work -------------------------


@dataclass
class Harness:
    store: Store
    step: Callable[[], None]  # commit what was written so far (Redis: a new unit)


@pytest.fixture(params=["memory", "redis-one-unit", "redis-unit-per-step"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "memory":
        yield Harness(InMemoryStore(), lambda: None)
        return
    client: redis.Redis = request.getfixturevalue("redis_client")
    store = RedisStore(client, "contract")
    switch = SwitchableStore(store.begin("step-0"))
    steps = iter(range(1, 1_000))

    def step() -> None:
        unit = switch.target
        assert isinstance(unit, RedisUnitOfWork)
        assert unit.commit([])
        switch.use(store.begin(f"step-{next(steps)}"))

    yield Harness(switch, step if request.param == "redis-unit-per-step" else lambda: None)


@integration
def test_contract_volunteers(harness: Harness) -> None:
    s = harness.store
    assert s.volunteer("v1") is None
    assert s.volunteers_for("c1", "repair.electrical") == []
    v1 = vol("v1", skills={"repair.electrical": 0.8, "repair.plumbing": 0.7}, served=("c1", "c2"))
    s.save_volunteer(v1)
    s.save_volunteer(vol("v0"))
    harness.step()
    assert s.volunteer("v1") == v1
    assert s.volunteers_for("c1", "repair.electrical") == ["v0", "v1"]
    assert s.volunteers_for("c2", "repair.plumbing") == ["v1"]
    s.save_volunteer(replace(v1, skills={"repair.plumbing": 0.9}))  # replaces whole
    harness.step()
    assert s.volunteers_for("c1", "repair.electrical") == ["v0"]
    assert s.volunteers_for("c1", "repair.plumbing") == ["v1"]
    s.save_volunteer(replace(v1, withdrawn=True))
    harness.step()
    got = s.volunteer("v1")
    assert got is not None
    assert got.withdrawn
    assert s.volunteers_for("c1", "repair.plumbing") == []
    s.save_volunteer(v1)  # available again
    harness.step()
    assert s.volunteers_for("c2", "repair.electrical") == ["v1"]


@integration
def test_contract_needs_and_seen(harness: Harness) -> None:
    s = harness.store
    assert s.need("n1") is None
    n1 = need_rec("n1")
    s.save_need(n1)
    assert not s.seen("e-1")
    s.remember("e-1")
    assert s.seen("e-1")
    harness.step()
    assert s.seen("e-1")
    assert s.need("n1") == n1
    n1b = replace(
        n1,
        cancelled=True,
        declined_by=frozenset({"v2", "v1"}),
        last_unmatched=(1, "no_capacity", True),
    )
    s.save_need(n1b)
    harness.step()
    assert s.need("n1") == n1b


@integration
def test_contract_bookings_overlap_and_cap(harness: Harness) -> None:
    s = harness.store
    s.save_volunteer(vol("v1", cap=150))
    s.save_need(need_rec("n1"))
    harness.step()
    b1 = booking("a1", "n1", "v1", at(0, 9))
    assert s.try_book(b1, 150)
    assert not s.try_book(booking("a2", "n2", "v1", at(0, 9, 30)), 150)  # overlaps
    harness.step()
    assert not s.try_book(booking("a2", "n2", "v1", at(0, 9, 59)), 150)
    assert s.try_book(booking("a2", "n2", "v1", at(0, 10)), 150)  # adjacent is fine
    harness.step()
    assert not s.try_book(booking("a3", "n3", "v1", at(1, 9)), 150)  # 120 + 60 > 150
    assert s.try_book(booking("a3", "n3", "v1", at(1, 9), minutes=30), 150)  # exactly 150
    assert s.try_book(booking("a4", "n4", "v1", at(7, 9)), 150)  # next ISO week: cap resets
    harness.step()
    assert [b.assignment_id for b in s.bookings_of_volunteer("v1")] == ["a1", "a2", "a3", "a4"]
    assert s.bookings_of_need("n1") == [b1]
    s.set_booking(replace(b1, status="cancelled"))  # frees the time and the hours
    harness.step()
    assert s.bookings_of_need("n1") == [replace(b1, status="cancelled")]
    assert s.try_book(booking("a5", "n5", "v1", at(0, 9, 30), minutes=15), 150)
    harness.step()
    assert len(s.bookings_of_volunteer("v1")) == 5
    assert [b.assignment_id for b in s.bookings_of_need("n5")] == ["a5"]


@integration
def test_contract_cap_across_a_week_boundary(harness: Harness) -> None:
    s = harness.store
    sunday_late = at(6, 23)  # 23:00 Sunday to 01:00 Monday: 60 minutes in each week
    assert s.try_book(booking("a1", "n1", "v1", sunday_late, minutes=120), 60)
    harness.step()
    assert not s.try_book(booking("a2", "n2", "v1", at(6, 10), minutes=15), 60)
    assert not s.try_book(booking("a3", "n3", "v1", at(7, 10), minutes=15), 60)
    assert s.try_book(booking("a4", "n4", "v1", at(14, 10), minutes=60), 60)


@integration
def test_contract_pending_order_and_expiry(harness: Harness) -> None:
    s = harness.store
    needs = [
        need_rec("n-low", urgency="low", posted=at(-1, 1)),
        need_rec("n-crit", urgency="critical", posted=at(-1, 9)),
        need_rec("n-normal-late", posted=at(-1, 8), types=("repair.plumbing",)),
        need_rec("n-normal-early", posted=at(-1, 7), window=(at(0, 9), at(0, 10))),
        need_rec("n-b", posted=at(-1, 7), types=("repair.electrical", "repair.plumbing")),
        need_rec("n-other", community="c2"),
    ]
    for n in needs:
        s.save_need(n)
        s.add_pending(n)
    harness.step()
    both = ["repair.electrical", "repair.plumbing"]
    assert s.pending_for("c1", both) == [
        "n-crit",
        "n-b",
        "n-normal-early",
        "n-normal-late",
        "n-low",
    ]
    assert s.pending_for("c1", ["repair.plumbing"]) == ["n-b", "n-normal-late"]
    assert s.pending_for("c2", both) == ["n-other"]
    assert s.pending_for("c3", both) == []
    s.remove_pending("n-crit")
    s.remove_pending("never-pending")
    s.add_pending(needs[0])  # again: still once
    harness.step()
    assert s.pending_for("c1", both) == ["n-b", "n-normal-early", "n-normal-late", "n-low"]
    # latest starts: n-normal-early 09:00, the others 11:00
    assert s.pending_expired(at(0, 9)) == []  # not strictly before now
    assert s.pending_expired(at(0, 9, 5)) == ["n-normal-early"]
    assert s.pending_expired(at(0, 9, 5)) == []  # popped
    s.remove_pending("n-normal-early")
    harness.step()
    assert s.pending_expired(at(0, 12)) == ["n-b", "n-normal-late", "n-other", "n-low"]
    for nid in ["n-b", "n-normal-late", "n-low", "n-other"]:
        s.remove_pending(nid)
    harness.step()
    assert s.pending_for("c1", both) == []
    assert s.pending_for("c2", both) == []
    s.add_pending(needs[1])  # back after removal: expires again
    harness.step()
    assert s.pending_expired(at(0, 12)) == ["n-crit"]


@integration
def test_pending_snapshot_follows_save_need(harness: Harness) -> None:
    s = harness.store
    n = need_rec("n1")
    s.save_need(n)
    s.add_pending(n)
    s.save_need(replace(n, last_unmatched=(1, "no_skill_match", True)))
    harness.step()
    assert s.pending_for("c1", ["repair.electrical"]) == ["n1"]
    s.remove_pending("n1")
    harness.step()
    assert s.pending_for("c1", ["repair.electrical"]) == []


# --- the engine over both stores -------------------------------------------------------------


def run_memory(lines: list[Line]) -> list[str]:
    engine = Engine(InMemoryStore(), KeywordSkillModel(DEFAULT_KEYWORDS))
    return [dump_output(o) for o in replay(lines, engine)]


def handle_committed(
    store: RedisStore,
    switch: SwitchableStore,
    engine: Engine,
    event: InputEvent,
    raw: bytes,
    offset: int,
) -> list[str]:
    """What the worker does: a unit per event, committed with the event's outputs."""
    if store.seen(event.event_id):
        return []  # a duplicate: replay publishes nothing (a worker re-publishes the outbox)
    while True:
        unit = store.begin(event.event_id)
        switch.use(unit)
        outputs = [
            dump_output(o)
            for o in apply_event(engine, event, raw, topic="replay", partition=0, offset=offset)
        ]
        if unit.commit(outputs):
            return outputs


def run_redis(client: redis.Redis, lines: list[Line]) -> list[str]:
    store = RedisStore(client, f"eq-{uuid.uuid4().hex[:8]}")
    switch = SwitchableStore()
    engine = Engine(switch, KeywordSkillModel(DEFAULT_KEYWORDS))
    out: list[str] = []
    for ln in lines:
        try:
            event = parse_input(ln.raw)
        except InvalidEventError as exc:
            out.append(
                dump_output(
                    reject(exc.message, ln.raw, topic="replay", partition=0, offset=ln.number)
                )
            )
            continue
        duplicate = store.seen(event.event_id)
        outputs = handle_committed(store, switch, engine, event, ln.raw, ln.number)
        assert duplicate or store.outbox(event.event_id) == outputs
        out += outputs
    return out


@integration
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(weeks())
def test_engine_outputs_identical_on_redis(
    redis_client: redis.Redis, events: list[dict[str, Any]]
) -> None:
    lines = [Line(i, line(e)) for i, e in enumerate(events)]
    assert run_redis(redis_client, lines) == run_memory(lines)


@integration
def test_engine_outputs_identical_on_dev_week(redis_client: redis.Redis) -> None:
    lines = [
        Line(i, raw) for i, raw in enumerate(DEV_WEEK.read_bytes().splitlines()) if raw.strip()
    ]
    expected = run_memory(lines)
    assert any('"assignment.proposed"' in o for o in expected)
    assert run_redis(redis_client, lines) == expected


@integration
def test_redelivered_event_is_not_handled_twice(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, "redeliver")
    switch = SwitchableStore()
    engine = Engine(switch, KeywordSkillModel(DEFAULT_KEYWORDS))
    ev = parse_input(line(volunteer_event("v1", windows=[(dev_time(0, 8), dev_time(0, 20))])))
    first = handle_committed(store, switch, engine, ev, b"", 0)
    assert store.seen(ev.event_id)
    assert store.outbox(ev.event_id) == first
    unit = store.begin(ev.event_id)
    switch.use(unit)
    assert engine.handle(ev) == []
    with pytest.raises(EventAlreadyCommittedError):
        unit.commit([])
    assert store.outbox(ev.event_id) == first


# --- racing workers ----------------------------------------------------------------------------


def race(units: list[RedisUnitOfWork]) -> list[bool]:
    """Commit all units at once from their own threads; their reads are already done."""
    barrier = threading.Barrier(len(units))
    results: list[bool | None] = [None] * len(units)

    def commit(i: int) -> None:
        barrier.wait()
        results[i] = units[i].commit([f"out-{i}"])

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(len(units))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return [bool(r) for r in results]


def seed_volunteer(client: redis.Redis, prefix: str, record: VolunteerRecord) -> None:
    unit = RedisStore(client, prefix).begin(f"seed-{record.volunteer_id}")
    unit.save_volunteer(record)
    assert unit.commit([])


@integration
@pytest.mark.parametrize(
    ("second_start", "cap", "why"),
    [(at(0, 9, 30), 240.0, "overlap"), (at(1, 9), 90.0, "cap")],
)
def test_racing_bookings_one_wins(
    redis_client: redis.Redis, second_start: datetime, cap: float, why: str
) -> None:
    seed_volunteer(redis_client, "race", vol("v1", cap=cap))
    clients = [client_like(redis_client) for _ in range(2)]
    stores = [RedisStore(c, "race") for c in clients]
    wanted = [booking("a1", "n1", "v1", at(0, 9)), booking("a2", "n2", "v1", second_start)]
    units = [s.begin(f"e{i}") for i, s in enumerate(stores)]
    for unit, b in zip(units, wanted, strict=True):
        assert unit.try_book(b, cap)  # both see a free volunteer
    results = race(units)
    assert sorted(results) == [False, True], why
    loser = results.index(False)
    assert stores[loser].outbox(f"e{loser}") is None  # a conflict writes nothing
    retry = stores[loser].begin(f"e{loser}")
    assert not retry.try_book(wanted[loser], cap)  # re-run: the time is taken
    assert retry.commit(["retried"])
    final = stores[0].begin("check")
    assert [b.assignment_id for b in final.bookings_of_volunteer("v1")] == [
        wanted[results.index(True)].assignment_id
    ]
    for c in clients:
        c.close()


@integration
def test_racing_engines_keep_the_rules(redis_client: redis.Redis) -> None:
    """Two workers handle two needs for the one fitting volunteer at the same moment."""
    model = KeywordSkillModel(DEFAULT_KEYWORDS)
    v_raw = line(
        volunteer_event("v1", windows=[(dev_time(0, 8), dev_time(0, 20))], max_hours_per_week=1)
    )
    n_raws = [line(need_event(f"n{i}", window=(dev_time(0, 9), dev_time(0, 11)))) for i in range(2)]
    events = [parse_input(r) for r in [v_raw, *n_raws]]
    prefix = "race-engine"
    setup_switch = SwitchableStore()
    handle_committed(
        RedisStore(redis_client, prefix),
        setup_switch,
        Engine(setup_switch, model),
        events[0],
        v_raw,
        0,
    )

    committed: list[tuple[InputEvent, list[OutputEvent]]] = [(events[0], [])]
    lock = threading.Lock()
    barrier = threading.Barrier(2)
    attempts = [0, 0]

    def worker(i: int) -> None:
        client = client_like(redis_client)
        store, switch = RedisStore(client, prefix), SwitchableStore()
        engine = Engine(switch, model)
        event = events[i + 1]
        while True:
            attempts[i] += 1
            unit = store.begin(event.event_id)
            switch.use(unit)
            outputs = engine.handle(event)
            if attempts[i] == 1:
                barrier.wait()  # both have read and decided before either commits
            with lock:  # keeps `committed` in commit order
                if unit.commit([dump_output(o) for o in outputs]):
                    committed.append((event, outputs))
                    break
        client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(attempts) == [1, 2]  # exactly one conflict, then a clean re-run
    kinds = sorted(o.type for _, outs in committed for o in outs)
    assert kinds == ["assignment.proposed", "need.unmatched"]
    fits = {"n0": {"v1"}, "n1": {"v1"}}
    assert check_rules(committed, fits) == []


@integration
def test_many_racing_workers_never_break_a_rule(redis_client: redis.Redis) -> None:
    model = KeywordSkillModel(DEFAULT_KEYWORDS)
    prefix = "stress"
    vol_raws = [
        line(
            volunteer_event(
                f"v{i}", windows=[(dev_time(0, 8), dev_time(0, 18))], max_hours_per_week=3
            )
        )
        for i in range(3)
    ]
    need_raws = [
        line(
            need_event(
                f"n{i:02d}",
                headcount=1 + i % 2,
                window=(dev_time(0, 8 + i % 6), dev_time(0, 12 + i % 6)),
            )
        )
        for i in range(24)
    ]
    vols = [parse_input(r) for r in vol_raws]
    needs = [parse_input(r) for r in need_raws]
    setup = SwitchableStore()
    setup_engine = Engine(setup, model)
    for v, raw in zip(vols, vol_raws, strict=True):
        handle_committed(RedisStore(redis_client, prefix), setup, setup_engine, v, raw, 0)
    committed: list[tuple[InputEvent | None, list[OutputEvent]]] = [(v, []) for v in vols]
    conflicts = [0]
    lock = threading.Lock()

    def worker(mine: list[InputEvent]) -> None:
        client = client_like(redis_client)
        store, switch = RedisStore(client, prefix), SwitchableStore()
        engine = Engine(switch, model)
        for event in mine:
            while True:
                unit = store.begin(event.event_id)
                switch.use(unit)
                outputs = engine.handle(event)
                with lock:
                    if unit.commit([dump_output(o) for o in outputs]):
                        committed.append((event, outputs))
                        break
                    conflicts[0] += 1
        client.close()

    threads = [threading.Thread(target=worker, args=(needs[i::4],)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    proposed = [o for _, outs in committed for o in outs if o.type == "assignment.proposed"]
    assert len(proposed) == 9  # 3 volunteers x 3 hours of 60-minute needs
    assert check_rules(committed, {f"n{i:02d}": {"v0", "v1", "v2"} for i in range(24)}) == []


# --- crash atomicity ---------------------------------------------------------------------------


def _posted_need_unit(
    client: redis.Redis, prefix: str
) -> tuple[RedisStore, RedisUnitOfWork, list[str]]:
    model = KeywordSkillModel(DEFAULT_KEYWORDS)
    store, switch = RedisStore(client, prefix), SwitchableStore()
    engine = Engine(switch, model)
    v_raw = line(volunteer_event("v1", windows=[(dev_time(0, 8), dev_time(0, 20))]))
    handle_committed(store, switch, engine, parse_input(v_raw), v_raw, 0)
    unit = store.begin("ev-n1")
    switch.use(unit)
    outputs = [dump_output(o) for o in engine.handle(parse_input(line(need_event("n1"))))]
    assert any("assignment.proposed" in o for o in outputs)
    return store, unit, outputs


@integration
def test_uncommitted_unit_leaves_redis_unchanged(redis_client: redis.Redis) -> None:
    before = snapshot(redis_client)
    store, unit, _ = _posted_need_unit(redis_client, "crash")
    after_setup = snapshot(redis_client)
    del unit  # the worker died before commit
    assert snapshot(redis_client) == after_setup
    assert not store.seen("ev-n1")
    assert store.outbox("ev-n1") is None
    assert len(after_setup) > len(before)


@integration
def test_conflicting_commit_writes_nothing(redis_client: redis.Redis) -> None:
    store, unit, outputs = _posted_need_unit(redis_client, "conflict")
    other = store.begin("other")
    assert other.try_book(booking("ax", "nx", "v1", at(3, 9)), 240)  # moves v1's version
    assert other.commit([])
    before = snapshot(redis_client)
    assert not unit.commit(outputs)
    assert snapshot(redis_client) == before


@integration
def test_committed_unit_leaves_seen_outbox_and_state(redis_client: redis.Redis) -> None:
    store, unit, outputs = _posted_need_unit(redis_client, "commit")
    assert unit.commit(outputs)
    assert store.seen("ev-n1")
    assert store.outbox("ev-n1") == outputs
    for key in ("commit:seen:ev-n1", "commit:outbox:ev-n1"):
        assert 0 < redis_client.ttl(key) <= 7 * 24 * 3600
    fresh = store.begin("read")
    need = fresh.need("n1")
    assert need is not None
    assert [b.volunteer_id for b in fresh.bookings_of_need("n1")] == ["v1"]
    assert [b.need_id for b in fresh.bookings_of_volunteer("v1")] == ["n1"]
    with pytest.raises(RuntimeError, match="already committed"):
        unit.need("n1")


@integration
def test_duplicate_commit_raises_and_writes_nothing(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client, "dup", ttl_s=60)
    first, second = store.begin("e1"), store.begin("e1")
    first.save_need(need_rec("n1"))
    second.save_need(need_rec("n2"))
    assert first.commit(["one"])
    before = snapshot(redis_client)
    with pytest.raises(EventAlreadyCommittedError):
        second.commit(["two"])
    assert snapshot(redis_client) == before
    assert store.outbox("e1") == ["one"]
    assert 0 < redis_client.ttl("dup:seen:e1") <= 60


# --- Redis unreachable ------------------------------------------------------------------------


# redis-py 8 retries 10 times with backoff by default: without retries the test is quick.
NO_RETRY = Retry(NoBackoff(), 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _assert_unavailable(client: redis.Redis) -> None:
    store = RedisStore(client, "down")
    with pytest.raises(StoreUnavailableError):
        store.seen("e1")
    with pytest.raises(StoreUnavailableError):
        store.outbox("e1")
    with pytest.raises(StoreUnavailableError):
        store.begin("e1").volunteer("v1")
    with pytest.raises(StoreUnavailableError):
        store.begin("e1").pending_expired(at(0, 0))
    unit = store.begin("e1")
    unit.remember("e1")
    with pytest.raises(StoreUnavailableError) as caught:
        unit.commit([])
    assert caught.value.transient


@integration
def test_connection_refused_is_store_unavailable() -> None:
    client = redis.Redis(
        port=_free_port(), socket_connect_timeout=0.5, socket_timeout=0.5, retry=NO_RETRY
    )
    _assert_unavailable(client)


@integration
def test_silent_server_is_store_unavailable() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        client = redis.Redis(
            port=port, socket_connect_timeout=0.5, socket_timeout=0.3, retry=NO_RETRY
        )
        _assert_unavailable(client)
