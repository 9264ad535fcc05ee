"""The live service's state in Redis: one optimistic unit of work per input event.

A worker handles an input event like this::

    published = store.outbox(event.event_id)
    if published is not None:            # handled before (maybe by a worker that crashed
        publish(published)               # after committing): publish the same outputs again
    else:
        while True:
            unit = store.begin(event.event_id)
            switch.use(unit)             # the Engine was built on this SwitchableStore
            outputs = [dump_output(o) for o in engine.handle(event)]
            try:
                if unit.commit(outputs):
                    break
            except EventAlreadyCommittedError:
                outputs = store.outbox(event.event_id) or []   # another worker won
                break
            # "conflict": another worker changed what this unit read; run the event again
        publish(outputs)

Reads go to Redis and are cached in the unit (so the unit sees one snapshot plus its own
writes); writes are only buffered. ``commit`` hands everything to ONE Lua script, which
applies all of it together with the event's ``seen`` mark and its outbox, or nothing.

Key layout (``P`` is ``key_prefix``; ``[c,t]`` is ``json.dumps([community, type])``)::

    P:seen:{event_id}     "1"                      TTL ``ttl_s``
    P:outbox:{event_id}   JSON list of output strs  TTL ``ttl_s``
    P:vol:{volunteer_id}  VolunteerRecord JSON      P:vbk:{volunteer_id}  LIST of assignment ids
    P:need:{need_id}      NeedRecord JSON           P:nbk:{need_id}       LIST of assignment ids
    P:bk:{assignment_id}  Booking JSON
    P:vidx:[c,t]          SET of volunteer ids (not withdrawn, serving c, skilled in t)
    P:pidx:[c,t]          SET of pending need ids placed in t, in community c
    P:pending             HASH need_id -> NeedRecord JSON (the snapshot ``add_pending`` got)
    P:pexp                ZSET need_id scored by latest_start (epoch seconds)
    P:ver:vol:{id}, P:ver:need:{id}, P:ver:vidx:[c,t], P:ver:pidx:[c,t]   version counters

Versions. A volunteer's counter is incremented on every change of its record or of any of
its bookings; a need's on every change of its record, bookings or pending entry; an
index's when its membership changes. The unit reads each counter atomically (MULTI) with
the data it guards and ``commit`` refuses ("conflict") when any counter it read has moved.
This covers more than the two booking rules need: since every read is checked, concurrent
units commit as if handled one after the other in commit order, so two workers can
neither double-book a volunteer nor over-fill a need's headcount, nor miss each other's
new volunteer / new pending need. The one read left unchecked is the expiry ZSET: expiry
is lazy and idempotent, a need missed now is expired by a later event.

Seen marks and outboxes expire after ``ttl_s`` (7 days by default) so Redis does not grow
forever. Consequence: a record redelivered after that is handled again as new. Kafka only
redelivers what was not committed, so this needs a consumer stalled for a week, an offset
reset, or an upstream app re-sending an old event; a re-handled ``need.posted`` is then
dead-lettered ("already posted") and a ``volunteer.available`` re-applied, rather than
its earlier outputs being published again.

Redis Cluster: the script touches many keys, so give a hash-tagged prefix
(``"{volmatch}"``) to put them all in one slot.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import orjson
import redis
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from matcher.exceptions import MatcherError, StoreUnavailableError
from matcher.state import Booking, NeedRecord, Store, VolunteerRecord, calendar_allows
from matcher.timeslots import Interval

__all__ = [
    "DEFAULT_TTL_S",
    "EventAlreadyCommittedError",
    "RedisStore",
    "RedisUnitOfWork",
    "SwitchableStore",
    "decode_booking",
    "decode_need",
    "decode_volunteer",
    "encode_booking",
    "encode_need",
    "encode_volunteer",
]

DEFAULT_TTL_S: Final = 7 * 24 * 3600

IndexKey = tuple[str, str]  # (community, service type)


class EventAlreadyCommittedError(MatcherError):
    """``commit`` found the event already seen: another unit (another worker, or this one
    before a crash) committed it first. Publish ``RedisStore.outbox(event_id)`` instead."""

    transient = False

    def __init__(self, event_id: str) -> None:
        super().__init__(f"event {event_id!r} was already committed")
        self.event_id = event_id


@contextmanager
def _unavailable_on_io_error() -> Iterator[None]:
    """Turn redis-py's connection failures into the matcher's transient error, so the
    worker retries the event instead of dead-lettering it."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise StoreUnavailableError(f"Redis is unavailable: {exc}") from exc


# --- serialisation: compact JSON, datetimes as ISO 8601 with their own offset --------------


def _dumps(value: object) -> str:
    # orjson writes what json.dumps(ensure_ascii=False, separators=(",", ":")) writes (floats
    # in exponent form aside, which parse back the same), at a fraction of the cost.
    return orjson.dumps(value).decode()


def _dt(moment: datetime) -> str:
    return moment.isoformat()


def _parse_dt(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:  # we only ever write aware times: this is not our data
        raise ValueError(f"stored time {text!r} has no offset")
    return moment


def _interval(pair: Sequence[str]) -> Interval:
    return (_parse_dt(pair[0]), _parse_dt(pair[1]))


def encode_volunteer(record: VolunteerRecord) -> str:
    return _dumps(
        {
            "volunteer_id": record.volunteer_id,
            "kind": record.kind,
            "community": record.community,
            "served": list(record.served),
            "availability": [[_dt(s), _dt(e)] for s, e in record.availability],
            "cap_minutes": record.cap_minutes,
            "skills": record.skills,
            "withdrawn": record.withdrawn,
        }
    )


def decode_volunteer(text: str) -> VolunteerRecord:
    data = json.loads(text)
    return VolunteerRecord(
        volunteer_id=data["volunteer_id"],
        kind=data["kind"],
        community=data["community"],
        served=tuple(data["served"]),
        availability=tuple(_interval(w) for w in data["availability"]),
        cap_minutes=data["cap_minutes"],
        skills=dict(data["skills"]),
        withdrawn=data["withdrawn"],
    )


def encode_need(record: NeedRecord) -> str:
    return _dumps(
        {
            "need_id": record.need_id,
            "community": record.community,
            "window": [_dt(record.window[0]), _dt(record.window[1])],
            "duration_minutes": record.duration_minutes,
            "headcount": record.headcount,
            "urgency": record.urgency,
            "posted_at": _dt(record.posted_at),
            "posted_event_id": record.posted_event_id,
            "types": [[t, c] for t, c in record.types],
            "support": [[t, c] for t, c in record.support],
            "cancelled": record.cancelled,
            "declined_by": sorted(record.declined_by),  # sorted: same record, same bytes
            "last_unmatched": list(record.last_unmatched) if record.last_unmatched else None,
        }
    )


def decode_need(text: str) -> NeedRecord:
    data = json.loads(text)
    last = data["last_unmatched"]
    return NeedRecord(
        need_id=data["need_id"],
        community=data["community"],
        window=_interval(data["window"]),
        duration_minutes=data["duration_minutes"],
        headcount=data["headcount"],
        urgency=data["urgency"],
        posted_at=_parse_dt(data["posted_at"]),
        posted_event_id=data["posted_event_id"],
        types=tuple((t, c) for t, c in data["types"]),
        support=tuple((t, c) for t, c in data.get("support", ())),
        cancelled=data["cancelled"],
        declined_by=frozenset(data["declined_by"]),
        last_unmatched=(last[0], last[1], last[2]) if last is not None else None,
    )


def encode_booking(booking: Booking) -> str:
    return _dumps(
        {
            "assignment_id": booking.assignment_id,
            "need_id": booking.need_id,
            "volunteer_id": booking.volunteer_id,
            "start": _dt(booking.start),
            "end": _dt(booking.end),
            "status": booking.status,
            "rating": booking.rating,
        }
    )


def decode_booking(text: str) -> Booking:
    data = json.loads(text)
    return Booking(
        assignment_id=data["assignment_id"],
        need_id=data["need_id"],
        volunteer_id=data["volunteer_id"],
        start=_parse_dt(data["start"]),
        end=_parse_dt(data["end"]),
        status=data["status"],
        rating=data["rating"],
    )


def _text(value: bytes | str) -> str:
    """Replies are bytes or str depending on the client's ``decode_responses``."""
    return value.decode() if isinstance(value, bytes) else value


def _version(value: bytes | str | None) -> int:
    return int(_text(value)) if value is not None else 0


# --- keys ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Keys:
    prefix: str

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def seen(self, event_id: str) -> str:
        return self._key("seen", event_id)

    def outbox(self, event_id: str) -> str:
        return self._key("outbox", event_id)

    def volunteer(self, volunteer_id: str) -> str:
        return self._key("vol", volunteer_id)

    def volunteer_bookings(self, volunteer_id: str) -> str:
        return self._key("vbk", volunteer_id)

    def need(self, need_id: str) -> str:
        return self._key("need", need_id)

    def need_bookings(self, need_id: str) -> str:
        return self._key("nbk", need_id)

    def booking(self, assignment_id: str) -> str:
        return self._key("bk", assignment_id)

    def index(self, kind: str, key: IndexKey) -> str:
        # JSON keeps (community, type) unambiguous whatever characters they hold.
        return self._key(kind, _dumps(list(key)))

    def pending(self) -> str:
        return self._key("pending")

    def expiry(self) -> str:
        return self._key("pexp")

    def version(self, *parts: str) -> str:
        return self._key("ver", *parts)


# --- the commit script -----------------------------------------------------------------

# KEYS: seen, outbox, n version counters, then one key per write op.
# ARGV: ttl_s, outbox JSON, then one JSON document {"v": [[expected version, bump 0/1]
#       x n], "o": [[op, a, b] x m]} for the m write ops, in the order of their keys (one
#       argument instead of 2n + 3m: the client's cost is per argument).
# Returns "duplicate", "conflict" or "applied". Every check (seen, versions, op names)
# runs before the first write: Redis does not roll a script back, so a script that could
# fail half-way would leave half an event behind.
_COMMIT_LUA: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'duplicate' end
local spec = cjson.decode(ARGV[3])
local versions, ops = spec['v'], spec['o']
local n = #versions
for i = 1, n do
  if (redis.call('GET', KEYS[2 + i]) or '0') ~= versions[i][1] then return 'conflict' end
end
local known = {set=1, rpush=1, sadd=1, srem=1, hset=1, hdel=1, zadd=1, zrem=1, seen=1}
for k = 1, #ops do
  if not known[ops[k][1]] then return redis.error_reply('unknown op ' .. ops[k][1]) end
end
if #KEYS ~= 2 + n + #ops then return redis.error_reply('keys and ops do not match') end
for i = 1, n do
  if versions[i][2] == 1 then redis.call('INCR', KEYS[2 + i]) end
end
for k = 1, #ops do
  local op, key, a, b = ops[k][1], KEYS[2 + n + k], ops[k][2], ops[k][3]
  if op == 'set' then redis.call('SET', key, a)
  elseif op == 'rpush' then redis.call('RPUSH', key, a)
  elseif op == 'sadd' then redis.call('SADD', key, a)
  elseif op == 'srem' then redis.call('SREM', key, a)
  elseif op == 'hset' then redis.call('HSET', key, a, b)
  elseif op == 'hdel' then redis.call('HDEL', key, a)
  elseif op == 'zadd' then redis.call('ZADD', key, b, a)
  elseif op == 'zrem' then redis.call('ZREM', key, a)
  elseif op == 'seen' then redis.call('SET', key, '1', 'EX', ARGV[1])
  end
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[1])
return 'applied'
"""

_WriteOp = tuple[str, str, str, str]  # (redis key, op, a, b)


# --- the unit's cached view --------------------------------------------------------------


@dataclass(slots=True)
class _Versioned:
    version_key: str
    version: int  # as read; commit requires it unchanged

    def bumps(self) -> bool:
        raise NotImplementedError


@dataclass(slots=True)
class _VolunteerState(_Versioned):
    record: VolunteerRecord | None
    booking_ids: list[str]
    stored_bookings: int = 0  # how many of booking_ids are already in Redis
    record_dirty: bool = False
    touched: bool = False  # one of its bookings changed

    def bumps(self) -> bool:
        return self.record_dirty or self.touched or len(self.booking_ids) > self.stored_bookings


@dataclass(slots=True)
class _NeedState(_Versioned):
    record: NeedRecord | None
    booking_ids: list[str]
    pending: NeedRecord | None  # the snapshot it is pending with, None when not pending
    stored_bookings: int = 0
    record_dirty: bool = False
    pending_dirty: bool = False
    touched: bool = False
    # The need's ZSET entry, once this unit changed it: its latest_start, or None (removed).
    expiry: datetime | None = None
    expiry_dirty: bool = False

    def bumps(self) -> bool:
        return (
            self.record_dirty
            or self.pending_dirty
            or self.expiry_dirty
            or self.touched
            or len(self.booking_ids) > self.stored_bookings
        )


@dataclass(slots=True)
class _IndexState(_Versioned):
    redis_key: str
    original: frozenset[str]
    members: set[str] = field(default_factory=set)

    def bumps(self) -> bool:
        return self.members != self.original


@dataclass(frozen=True, slots=True)
class _CachedVolunteer:
    version: int
    record: VolunteerRecord | None
    booking_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _CachedNeed:
    version: int
    record: NeedRecord | None
    booking_ids: tuple[str, ...]
    pending: NeedRecord | None


_Cached = TypeVar("_Cached", _CachedVolunteer, _CachedNeed)


@dataclass(frozen=True, slots=True)
class _CachedIndex:
    version: int
    members: frozenset[str]


# A volunteer's and a need's state as one MULTI reads it: the version first, then the data
# it guards. Units and the batch prefetch queue and decode them the same way.
_VOLUNTEER_REPLIES: Final = 3
_NEED_REPLIES: Final = 4


def _queue_volunteer_read(pipe: Pipeline, keys: _Keys, volunteer_id: str) -> None:
    pipe.get(keys.version("vol", volunteer_id))
    pipe.get(keys.volunteer(volunteer_id))
    pipe.lrange(keys.volunteer_bookings(volunteer_id), 0, -1)


def _queue_need_read(pipe: Pipeline, keys: _Keys, need_id: str) -> None:
    pipe.get(keys.version("need", need_id))
    pipe.get(keys.need(need_id))
    pipe.lrange(keys.need_bookings(need_id), 0, -1)
    pipe.hget(keys.pending(), need_id)


def _volunteer_read(replies: Sequence[Any]) -> _CachedVolunteer:
    version, raw, ids = replies
    return _CachedVolunteer(
        _version(version),
        decode_volunteer(_text(raw)) if raw is not None else None,
        tuple(_text(a) for a in ids),
    )


def _need_read(replies: Sequence[Any]) -> _CachedNeed:
    version, raw, ids, pending = replies
    return _CachedNeed(
        _version(version),
        decode_need(_text(raw)) if raw is not None else None,
        tuple(_text(a) for a in ids),
        decode_need(_text(pending)) if pending is not None else None,
    )


class _ExpiryView:
    """The expiry ZSET's entries that may expire during a batch: need id -> latest start
    (epoch s), with a heap so each event finds the expired ones without a scan."""

    def __init__(self, entries: Iterable[tuple[str, float]], horizon: float) -> None:
        self.horizon = horizon
        self._score = dict(entries)
        self._heap = [(score, need_id) for need_id, score in self._score.items()]
        heapq.heapify(self._heap)

    def expired_before(self, at: float) -> set[str]:
        found: list[tuple[float, str]] = []
        heap = self._heap
        while heap and heap[0][0] < at:
            score, need_id = heapq.heappop(heap)
            if self._score.get(need_id) == score:  # else an outdated entry: drop it
                found.append((score, need_id))
        for item in found:  # still in the ZSET until a unit that expires them commits
            heapq.heappush(heap, item)
        return {need_id for _, need_id in found}

    def set(self, need_id: str, score: float | None) -> None:
        if score is None:
            self._score.pop(need_id, None)
            return
        self._score[need_id] = score
        heapq.heappush(self._heap, (score, need_id))


class _ReadCache:
    """What this process last committed or read, each entry with the version it had.

    A unit reads from here instead of Redis; ``commit`` still checks every version the
    unit read, so an entry that another worker has since changed costs one conflict (the
    unit's entries are dropped and the event re-runs on Redis's data), never a wrong
    decision. Entries are written only from a unit that committed, or from a fresh read.
    Bookings are cached with their owners: a booking that changed moved both owners'
    versions, so a stale one cannot pass a commit either.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.volunteers: dict[str, _CachedVolunteer] = {}
        self.needs: dict[str, _CachedNeed] = {}
        self.indexes: dict[tuple[str, IndexKey], _CachedIndex] = {}
        self.bookings: dict[str, Booking] = {}
        # Needs in the expiry ZSET that may expire during the current batch (need id ->
        # latest start, epoch s), read once per batch; None: read Redis at each event.
        self.expiry_view: _ExpiryView | None = None
        # The batch's events, as its prefetch found them: their outboxes (committed before)
        # and those that had none. An event known to have none needs no outbox read or seen
        # check before its unit commits: the commit script refuses a duplicate anyway. Kept
        # with the cache off too (they only spare round trips); cleared by ``end_batch``.
        self.outboxes: dict[str, list[str]] = {}
        self.unseen: set[str] = set()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def trim(self) -> None:
        """Bounded memory: past the limit everything goes (re-read on demand)."""
        size = len(self.volunteers) + len(self.needs) + len(self.indexes) + len(self.bookings)
        if size > self.max_entries:
            self.volunteers.clear()
            self.needs.clear()
            self.indexes.clear()
            self.bookings.clear()


class RedisStore:
    """Entry point for workers: one ``begin`` per input event, plus the redelivery path.

    One thread at a time: the worker handles its records one after the other. With
    ``cache_entries`` > 0 the store keeps a version-checked read cache (``_ReadCache``)
    and ``prefetch`` reads a batch's outboxes and expiry candidates in one round trip.
    """

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        cache_entries: int = 100_000,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._client = client
        self._keys = _Keys(key_prefix)
        self._ttl_s = ttl_s
        # register_script does no I/O: it runs EVALSHA and loads the script on NOSCRIPT.
        self._commit_script = client.register_script(_COMMIT_LUA)
        self._cache = _ReadCache(cache_entries)

    def begin(self, event_id: str) -> RedisUnitOfWork:
        return RedisUnitOfWork(self, event_id)

    def prefetch(
        self,
        event_ids: Sequence[str],
        latest: datetime | None,
        *,
        need_ids: Sequence[str] = (),
        volunteer_ids: Sequence[str] = (),
    ) -> None:
        """Before a batch, in one MULTI: the outboxes of its events (those committed
        before; ``outbox`` then answers from them), the needs that may expire before
        ``latest`` (the batch's last event time), and the needs and volunteers its
        events name, into the read cache.
        Expiry read this way misses needs another worker adds during the batch; expiry
        is lazy anyway, and a later batch finds them."""
        keys, cache = self._keys, self._cache
        if not cache.enabled:
            need_ids, volunteer_ids = (), ()
        with _unavailable_on_io_error():
            pipe = self._client.pipeline(transaction=True)
            pipe.mget([keys.outbox(e) for e in event_ids] or [keys.outbox("")])
            horizon = latest.timestamp() if latest is not None else float("-inf")
            pipe.zrangebyscore(keys.expiry(), "-inf", f"({horizon!r}", withscores=True)
            for n in need_ids:
                _queue_need_read(pipe, keys, n)
            for v in volunteer_ids:
                _queue_volunteer_read(pipe, keys, v)
            replies = list(pipe.execute())
        outboxes, expiring = replies[0], replies[1]
        cache.outboxes = {
            e: json.loads(_text(raw))
            for e, raw in zip(event_ids, outboxes, strict=False)
            if raw is not None
        }
        cache.unseen = {e for e in event_ids if e not in cache.outboxes}
        if not cache.enabled:
            return
        if latest is not None:
            entries = ((_text(n), float(score)) for n, score in expiring)
            cache.expiry_view = _ExpiryView(entries, horizon)
        self._cache_states(replies[2:], need_ids, volunteer_ids)

    def _cache_states(
        self, replies: list[Any], need_ids: Sequence[str], volunteer_ids: Sequence[str]
    ) -> None:
        cache = self._cache
        n, v = _NEED_REPLIES, _VOLUNTEER_REPLIES
        needs = [_need_read(replies[n * i : n * i + n]) for i in range(len(need_ids))]
        base = n * len(need_ids)
        vols = [
            _volunteer_read(replies[base + v * i : base + v * i + v])
            for i in range(len(volunteer_ids))
        ]
        owners: list[_CachedNeed | _CachedVolunteer] = [*needs, *vols]
        listed = [a for entry in owners for a in entry.booking_ids]
        if listed:  # after the owners' versions, as a unit reads them
            with _unavailable_on_io_error():
                raws = self._client.mget([self._keys.booking(a) for a in listed])
            for assignment_id, raw in zip(listed, raws, strict=True):
                if raw is not None:
                    cache.bookings[assignment_id] = decode_booking(_text(raw))
        cache.needs.update(zip(need_ids, needs, strict=True))
        cache.volunteers.update(zip(volunteer_ids, vols, strict=True))
        cache.trim()

    def end_batch(self) -> None:
        self._cache.expiry_view = None
        self._cache.outboxes = {}
        self._cache.unseen = set()

    def seen(self, event_id: str) -> bool:
        with _unavailable_on_io_error():
            return bool(self._client.exists(self._keys.seen(event_id)))

    def outbox(self, event_id: str) -> list[str] | None:
        """The outputs committed with ``event_id``, or None if it was never committed
        (or its outbox has expired). Answered from the batch's prefetch where it can be:
        an event stays "unseen" there only until a unit for it has tried to commit."""
        cache = self._cache
        if event_id in cache.outboxes:
            return cache.outboxes[event_id]
        if event_id in cache.unseen:
            return None
        with _unavailable_on_io_error():
            raw = self._client.get(self._keys.outbox(event_id))
        if raw is None:
            return None
        outputs: list[str] = json.loads(_text(raw))
        return outputs


class RedisUnitOfWork:
    """A ``matcher.state.Store`` for one input event: reads Redis, buffers writes, and
    applies them all with ``commit``, or nothing. Not thread-safe; use once."""

    def __init__(self, store: RedisStore, event_id: str) -> None:
        self.event_id = event_id
        self._client = store._client
        self._keys = store._keys
        self._ttl_s = store._ttl_s
        self._script = store._commit_script
        self._cache = store._cache
        self._closed = False
        self._seen: dict[str, bool] = {}
        self._remembered: set[str] = set()
        self._volunteers: dict[str, _VolunteerState] = {}
        self._needs: dict[str, _NeedState] = {}
        self._indexes: dict[tuple[str, IndexKey], _IndexState] = {}
        self._bookings: dict[str, Booking] = {}
        self._dirty_bookings: set[str] = set()

    # --- Redis access ---------------------------------------------------------------------

    def _open(self) -> None:
        if self._closed:
            raise RuntimeError(f"unit of work for {self.event_id!r} is already committed")

    def _transaction(self, build: Callable[[Pipeline], None]) -> list[Any]:
        """One MULTI/EXEC round trip: a version and the data it guards read together."""
        self._open()
        with _unavailable_on_io_error():
            pipe = self._client.pipeline(transaction=True)
            build(pipe)
            return list(pipe.execute())

    def _load_volunteers(self, volunteer_ids: Iterable[str]) -> None:
        self._open()  # even when cached: a committed unit must not be read again
        missing = [v for v in dict.fromkeys(volunteer_ids) if v not in self._volunteers]
        missing = self._from_cache(missing, self._cache.volunteers, self._adopt_volunteer)
        if not missing:
            return

        def build(pipe: Pipeline) -> None:
            for v in missing:
                _queue_volunteer_read(pipe, self._keys, v)

        replies = self._transaction(build)
        size = _VOLUNTEER_REPLIES
        for i, v in enumerate(missing):
            self._adopt_volunteer(v, _volunteer_read(replies[size * i : size * i + size]))
        self._load_bookings(
            (a for v in missing for a in self._volunteers[v].booking_ids), fresh=True
        )

    def _from_cache(
        self,
        wanted: list[str],
        cached: Mapping[str, _Cached],
        adopt: Callable[[str, _Cached], None],
    ) -> list[str]:
        """Adopt what the cache holds (with all its bookings); return the ids still to
        read from Redis."""
        rest = []
        for key in wanted:
            entry = cached.get(key)
            if entry is None or not self._adopt_cached_bookings(entry.booking_ids):
                rest.append(key)
                continue
            adopt(key, entry)
        return rest

    def _adopt_volunteer(self, volunteer_id: str, entry: _CachedVolunteer) -> None:
        self._volunteers[volunteer_id] = _VolunteerState(
            version_key=self._keys.version("vol", volunteer_id),
            version=entry.version,
            record=entry.record,
            booking_ids=list(entry.booking_ids),
            stored_bookings=len(entry.booking_ids),
        )

    def _load_needs(self, need_ids: Iterable[str]) -> None:
        self._open()  # even when cached: a committed unit must not be read again
        missing = [n for n in dict.fromkeys(need_ids) if n not in self._needs]
        missing = self._from_cache(missing, self._cache.needs, self._adopt_need)
        if not missing:
            return

        def build(pipe: Pipeline) -> None:
            for n in missing:
                _queue_need_read(pipe, self._keys, n)

        replies = self._transaction(build)
        size = _NEED_REPLIES
        for i, n in enumerate(missing):
            self._adopt_need(n, _need_read(replies[size * i : size * i + size]))
        self._load_bookings((a for n in missing for a in self._needs[n].booking_ids), fresh=True)

    def _adopt_need(self, need_id: str, entry: _CachedNeed) -> None:
        self._needs[need_id] = _NeedState(
            version_key=self._keys.version("need", need_id),
            version=entry.version,
            record=entry.record,
            booking_ids=list(entry.booking_ids),
            pending=entry.pending,
            stored_bookings=len(entry.booking_ids),
        )

    def _adopt_cached_bookings(self, booking_ids: Sequence[str]) -> bool:
        """Take an owner's bookings from the cache; False when one is missing there."""
        cached = self._cache.bookings
        if any(a not in cached for a in booking_ids):
            return False
        for a in booking_ids:
            self._bookings.setdefault(a, cached[a])
        return True

    def _load_bookings(self, assignment_ids: Iterable[str], *, fresh: bool = False) -> None:
        # Read after the owners' versions: a booking changed since moves those versions,
        # so reading it in a second round trip cannot slip past commit's check.
        missing = [a for a in dict.fromkeys(assignment_ids) if a not in self._bookings]
        if not missing:
            return
        self._open()
        with _unavailable_on_io_error():
            raws = self._client.mget([self._keys.booking(a) for a in missing])
        for assignment_id, raw in zip(missing, raws, strict=True):
            if raw is None:
                raise LookupError(f"booking {assignment_id!r} is listed but not stored")
            booking = decode_booking(_text(raw))
            self._bookings[assignment_id] = booking
            if fresh and self._cache.enabled:
                self._cache.bookings[assignment_id] = booking

    def _load_indexes(self, kind: str, index_keys: Iterable[IndexKey]) -> list[_IndexState]:
        self._open()  # even when cached: a committed unit must not be read again
        wanted = list(dict.fromkeys(index_keys))
        missing = [k for k in wanted if (kind, k) not in self._indexes]
        missing = self._indexes_from_cache(kind, missing)
        if missing:
            keys = self._keys

            def build(pipe: Pipeline) -> None:
                for k in missing:
                    pipe.get(keys.version(kind, _dumps(list(k))))
                    pipe.smembers(keys.index(kind, k))

            replies = self._transaction(build)
            for i, k in enumerate(missing):
                version, members = replies[2 * i : 2 * i + 2]
                found = frozenset(_text(m) for m in members)
                self._indexes[(kind, k)] = _IndexState(
                    version_key=keys.version(kind, _dumps(list(k))),
                    version=_version(version),
                    redis_key=keys.index(kind, k),
                    original=found,
                    members=set(found),
                )
        return [self._indexes[(kind, k)] for k in wanted]

    def _indexes_from_cache(self, kind: str, wanted: list[IndexKey]) -> list[IndexKey]:
        rest = []
        for k in wanted:
            entry = self._cache.indexes.get((kind, k))
            if entry is None:
                rest.append(k)
                continue
            self._indexes[(kind, k)] = _IndexState(
                version_key=self._keys.version(kind, _dumps(list(k))),
                version=entry.version,
                redis_key=self._keys.index(kind, k),
                original=entry.members,
                members=set(entry.members),
            )
        return rest

    def _volunteer_state(self, volunteer_id: str) -> _VolunteerState:
        self._load_volunteers([volunteer_id])
        return self._volunteers[volunteer_id]

    def _need_state(self, need_id: str) -> _NeedState:
        self._load_needs([need_id])
        return self._needs[need_id]

    # --- Store: seen ------------------------------------------------------------------------

    def seen(self, event_id: str) -> bool:
        self._open()
        if event_id in self._remembered:
            return True
        if event_id == self.event_id and event_id in self._cache.unseen:
            return False  # the batch's prefetch found no outbox; commit checks again
        if event_id not in self._seen:
            with _unavailable_on_io_error():
                self._seen[event_id] = bool(self._client.exists(self._keys.seen(event_id)))
        return self._seen[event_id]

    def remember(self, event_id: str) -> None:
        self._open()
        self._remembered.add(event_id)

    # --- Store: volunteers ----------------------------------------------------------------

    def volunteer(self, volunteer_id: str) -> VolunteerRecord | None:
        return self._volunteer_state(volunteer_id).record

    def volunteers(self, volunteer_ids: Iterable[str]) -> dict[str, VolunteerRecord]:
        ids = list(dict.fromkeys(volunteer_ids))
        self._load_volunteers(ids)  # one MULTI for all of them, one MGET for their bookings
        found = {v: self._volunteers[v].record for v in ids}
        return {v: record for v, record in found.items() if record is not None}

    def save_volunteer(self, record: VolunteerRecord) -> None:
        state = self._volunteer_state(record.volunteer_id)
        if state.record is not None:
            for index in self._load_indexes("vidx", _index_keys(state.record)):
                index.members.discard(record.volunteer_id)
        for index in self._load_indexes("vidx", _index_keys(record)):
            index.members.add(record.volunteer_id)
        state.record = record
        state.record_dirty = True

    def volunteers_for(self, community: str, service_type: str) -> list[str]:
        (index,) = self._load_indexes("vidx", [(community, service_type)])
        members = sorted(index.members)
        # The engine reads each of them next: fetch them all in one round trip now.
        self._load_volunteers(members)
        return members

    # --- Store: needs ---------------------------------------------------------------------

    def need(self, need_id: str) -> NeedRecord | None:
        return self._need_state(need_id).record

    def save_need(self, record: NeedRecord) -> None:
        state = self._need_state(record.need_id)
        state.record = record
        state.record_dirty = True
        if state.pending is not None:  # as InMemoryStore: the pending snapshot follows
            state.pending = record
            state.pending_dirty = True

    # --- Store: bookings ------------------------------------------------------------------

    def bookings_of_volunteer(self, volunteer_id: str) -> list[Booking]:
        return [self._bookings[a] for a in self._volunteer_state(volunteer_id).booking_ids]

    def bookings_of_need(self, need_id: str) -> list[Booking]:
        return [self._bookings[a] for a in self._need_state(need_id).booking_ids]

    def try_book(self, booking: Booking, cap_minutes: float) -> bool:
        """Checks against this unit's snapshot; ``commit`` makes it hold against Redis
        (the volunteer's version must not have moved)."""
        volunteer = self._volunteer_state(booking.volunteer_id)
        mine = self.bookings_of_volunteer(booking.volunteer_id)
        if not calendar_allows(booking, mine, cap_minutes):
            return False
        need = self._need_state(booking.need_id)
        self._bookings[booking.assignment_id] = booking
        self._dirty_bookings.add(booking.assignment_id)
        volunteer.booking_ids.append(booking.assignment_id)
        need.booking_ids.append(booking.assignment_id)
        return True

    def set_booking(self, booking: Booking) -> None:
        self._volunteer_state(booking.volunteer_id).touched = True
        self._need_state(booking.need_id).touched = True
        self._bookings[booking.assignment_id] = booking
        self._dirty_bookings.add(booking.assignment_id)

    # --- Store: pending needs -------------------------------------------------------------

    def add_pending(self, need: NeedRecord) -> None:
        self.remove_pending(need.need_id)
        state = self._need_state(need.need_id)
        state.pending = need
        state.pending_dirty = True
        state.expiry = need.latest_start
        state.expiry_dirty = True
        for index in self._load_indexes("pidx", _pending_keys(need)):
            index.members.add(need.need_id)

    def remove_pending(self, need_id: str) -> None:
        state = self._need_state(need_id)
        if state.pending is None:
            return
        for index in self._load_indexes("pidx", _pending_keys(state.pending)):
            index.members.discard(need_id)
        state.pending = None
        state.pending_dirty = True
        state.expiry = None
        state.expiry_dirty = True

    def pending_for(self, community: str, service_types: Iterable[str]) -> list[str]:
        keys = [(community, t) for t in service_types]
        ids: set[str] = set()
        for index in self._load_indexes("pidx", keys):
            ids.update(index.members)
        self._load_needs(ids)
        return self._by_priority(ids)

    def pending_expired(self, now: datetime) -> list[str]:
        """Needs whose latest start is before ``now``; like InMemoryStore's heap pop, they
        leave the expiry ZSET here (the engine then removes them from pending)."""
        self._open()
        view = self._cache.expiry_view
        if view is not None and now.timestamp() <= view.horizon:
            candidates = view.expired_before(now.timestamp())
        else:
            with _unavailable_on_io_error():
                stored = self._client.zrangebyscore(
                    self._keys.expiry(), "-inf", f"({now.timestamp()!r}"
                )
            candidates = {_text(n) for n in cast("list[bytes | str]", stored)}
        self._load_needs(candidates)
        candidates = {n for n in candidates if not self._needs[n].expiry_dirty}
        candidates.update(
            n
            for n, s in self._needs.items()
            if s.expiry_dirty and s.expiry is not None and s.expiry < now
        )
        for need_id in candidates:
            state = self._needs[need_id]
            state.expiry = None
            state.expiry_dirty = True
        return self._by_priority(candidates)

    def _by_priority(self, need_ids: Iterable[str]) -> list[str]:
        pending = [(n, self._needs[n].pending) for n in need_ids]
        ranked = [(record.priority, n) for n, record in pending if record is not None]
        return [n for _, n in sorted(ranked)]

    # --- commit ---------------------------------------------------------------------------

    def commit(self, outputs: Sequence[str]) -> bool:
        """Apply every buffered write with the event's seen mark and ``outputs`` as its
        outbox, atomically. True: applied. False: another unit changed something this
        one read; nothing was written, run the event again on a fresh unit. Raises
        ``EventAlreadyCommittedError`` when the event is already seen (nothing written);
        that includes redis-py retrying this very script after a lost reply, so the
        answer is always to publish ``RedisStore.outbox``. ``StoreUnavailableError``
        when Redis cannot be reached (maybe applied: check the outbox before re-running)."""
        self._open()
        self._closed = True
        keys, args = self._script_call(outputs)
        try:
            with _unavailable_on_io_error():
                result = _text(self._script(keys=keys, args=args))
        except StoreUnavailableError:
            self._forget_what_was_read()
            raise
        if result == "applied":
            self._remember_committed_state()
            return True
        self._forget_what_was_read()
        if result == "conflict":
            return False
        raise EventAlreadyCommittedError(self.event_id)

    def _remember_committed_state(self) -> None:
        """Every state this unit read is now known at its new version."""
        cache = self._cache
        cache.unseen.discard(self.event_id)
        if not cache.enabled:
            return
        for v, vol in self._volunteers.items():
            cache.volunteers[v] = _CachedVolunteer(
                vol.version + vol.bumps(), vol.record, tuple(vol.booking_ids)
            )
        for n, need in self._needs.items():
            cache.needs[n] = _CachedNeed(
                need.version + need.bumps(), need.record, tuple(need.booking_ids), need.pending
            )
            if cache.expiry_view is not None and need.expiry_dirty:
                expiry = need.expiry.timestamp() if need.expiry is not None else None
                cache.expiry_view.set(n, expiry)
        for key, index in self._indexes.items():
            cache.indexes[key] = _CachedIndex(
                index.version + index.bumps(), frozenset(index.members)
            )
        cache.bookings.update(self._bookings)
        cache.trim()

    def _forget_what_was_read(self) -> None:
        """Some version moved under this unit: re-read all of it from Redis next time."""
        cache = self._cache
        for v in self._volunteers:
            cache.volunteers.pop(v, None)
        for n in self._needs:
            cache.needs.pop(n, None)
        for key in self._indexes:
            cache.indexes.pop(key, None)
        cache.unseen.discard(self.event_id)

    def _script_call(self, outputs: Sequence[str]) -> tuple[list[str], list[str]]:
        keys = [self._keys.seen(self.event_id), self._keys.outbox(self.event_id)]
        versioned: list[_Versioned] = [
            *self._volunteers.values(),
            *self._needs.values(),
            *self._indexes.values(),
        ]
        versions = []
        for state in versioned:
            keys.append(state.version_key)
            versions.append([str(state.version), 1 if state.bumps() else 0])
        ops = []
        for key, op, a, b in self._write_ops():
            keys.append(key)
            ops.append([op, a, b])
        spec = _dumps({"v": versions, "o": ops})
        return keys, [str(self._ttl_s), _dumps(list(outputs)), spec]

    def _write_ops(self) -> Iterator[_WriteOp]:
        for volunteer_id, volunteer in self._volunteers.items():
            yield from self._volunteer_ops(volunteer_id, volunteer)
        for need_id, need in self._needs.items():
            yield from self._need_ops(need_id, need)
        for assignment_id in sorted(self._dirty_bookings):
            booking = self._bookings[assignment_id]
            yield (self._keys.booking(assignment_id), "set", encode_booking(booking), "")
        for index in self._indexes.values():
            for member in sorted(index.members - index.original):
                yield (index.redis_key, "sadd", member, "")
            for member in sorted(index.original - index.members):
                yield (index.redis_key, "srem", member, "")
        for event_id in sorted(self._remembered - {self.event_id}):
            yield (self._keys.seen(event_id), "seen", "", "")

    def _volunteer_ops(self, volunteer_id: str, state: _VolunteerState) -> Iterator[_WriteOp]:
        if state.record_dirty and state.record is not None:
            yield (self._keys.volunteer(volunteer_id), "set", encode_volunteer(state.record), "")
        for assignment_id in state.booking_ids[state.stored_bookings :]:
            yield (self._keys.volunteer_bookings(volunteer_id), "rpush", assignment_id, "")

    def _need_ops(self, need_id: str, state: _NeedState) -> Iterator[_WriteOp]:
        keys = self._keys
        if state.record_dirty and state.record is not None:
            yield (keys.need(need_id), "set", encode_need(state.record), "")
        for assignment_id in state.booking_ids[state.stored_bookings :]:
            yield (keys.need_bookings(need_id), "rpush", assignment_id, "")
        if state.pending_dirty:
            if state.pending is None:
                yield (keys.pending(), "hdel", need_id, "")
            else:
                yield (keys.pending(), "hset", need_id, encode_need(state.pending))
        if state.expiry_dirty:
            if state.expiry is None:
                yield (keys.expiry(), "zrem", need_id, "")
            else:
                yield (keys.expiry(), "zadd", need_id, repr(state.expiry.timestamp()))


def _index_keys(record: VolunteerRecord) -> list[IndexKey]:
    """Where a volunteer is listed: the same rule as ``matcher.state``'s index."""
    if record.withdrawn:
        return []
    return [(c, t) for c in record.served for t in record.skills]


def _pending_keys(need: NeedRecord) -> list[IndexKey]:
    return [(need.community, t) for t in need.wanted_types]


class SwitchableStore:
    """A ``Store`` that forwards to a target swapped per event: the ``Engine`` keeps the
    store it was built with, while the worker needs a fresh unit of work per event."""

    def __init__(self, target: Store | None = None) -> None:
        self._target = target

    def use(self, target: Store | None) -> None:
        self._target = target

    @property
    def target(self) -> Store:
        if self._target is None:
            raise RuntimeError("SwitchableStore has no target: call use(unit) first")
        return self._target

    def seen(self, event_id: str) -> bool:
        return self.target.seen(event_id)

    def remember(self, event_id: str) -> None:
        self.target.remember(event_id)

    def volunteer(self, volunteer_id: str) -> VolunteerRecord | None:
        return self.target.volunteer(volunteer_id)

    def volunteers(self, volunteer_ids: Iterable[str]) -> dict[str, VolunteerRecord]:
        return self.target.volunteers(volunteer_ids)

    def save_volunteer(self, record: VolunteerRecord) -> None:
        self.target.save_volunteer(record)

    def volunteers_for(self, community: str, service_type: str) -> list[str]:
        return self.target.volunteers_for(community, service_type)

    def need(self, need_id: str) -> NeedRecord | None:
        return self.target.need(need_id)

    def save_need(self, record: NeedRecord) -> None:
        self.target.save_need(record)

    def bookings_of_volunteer(self, volunteer_id: str) -> list[Booking]:
        return self.target.bookings_of_volunteer(volunteer_id)

    def bookings_of_need(self, need_id: str) -> list[Booking]:
        return self.target.bookings_of_need(need_id)

    def try_book(self, booking: Booking, cap_minutes: float) -> bool:
        return self.target.try_book(booking, cap_minutes)

    def set_booking(self, booking: Booking) -> None:
        self.target.set_booking(booking)

    def add_pending(self, need: NeedRecord) -> None:
        self.target.add_pending(need)

    def remove_pending(self, need_id: str) -> None:
        self.target.remove_pending(need_id)

    def pending_for(self, community: str, service_types: Iterable[str]) -> list[str]:
        return self.target.pending_for(community, service_types)

    def pending_expired(self, now: datetime) -> list[str]:
        return self.target.pending_expired(now)


if TYPE_CHECKING:  # both must stay usable wherever the engine wants a Store

    def _protocol_check(unit: RedisUnitOfWork, switch: SwitchableStore) -> None:
        _unit: Store = unit
        _switch: Store = switch
