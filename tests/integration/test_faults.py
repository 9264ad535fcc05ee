"""The live worker under faults: two workers in one group, kill -9 mid-stream, Redis and
broker restarts, and no resident contact in any output or log.

Every test runs real ``python -m streams worker`` processes (``live.Worker``) against the
session's Kafka and Redis, each with its own topic prefix, group and Redis key prefix.
The oracle is the replay of the same input in the order the worker saw it: a needs topic
with one partition, and volunteers produced and consumed before the needs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, NoBrokersAvailable

from matcher.settings import ModelSettings
from matcher.timeslots import weekly_minutes
from models.factory import build_skill_model
from schemas.codec import parse_input
from streams.lag import PartitionLag, consumer_lag
from tests.integration.live import LiveSetup, Worker

if TYPE_CHECKING:
    from tests.integration.conftest import Services

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "week.jsonl"
DEV_WEEK = ROOT / "tests" / "data" / "dev_week.jsonl"
DEV_LABELS = ROOT / "tests" / "data" / "dev_week.labels.json"

# A week of the sample cloned this often: 21 volunteer + 32 need events per copy.
CRASH_COPIES = 40
# The service types of the competition week, from labelled needs and volunteers of the
# dev week that the skill model places there too.
COMPETED_TYPES = ("repair.electrical", "tutor.math", "psych.child_family")
COMMUNITY = "幸福里社区"


# --- inputs ----------------------------------------------------------------------------


def nonblank(raw: bytes) -> list[bytes]:
    return [x for x in raw.split(b"\n") if x.strip()]


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


def by_phase(lines: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """(volunteer events, the rest), each in input order: on a one-partition needs topic
    the worker then sees the needs in the same order as replay does."""
    volunteers = [x for x in lines if b'"volunteer.' in x]
    return volunteers, [x for x in lines if b'"volunteer.' not in x]


def contact_of(copy: int, line: int, tag: str) -> dict[str, str]:
    """A resident contact unique to one cloned need, easy to grep for."""
    return {"name": f"居民{tag}{copy}号{line}", "phone": f"139{copy:04d}{line:04d}"}


def clone_week(lines: list[bytes], copies: int, tag: str) -> list[bytes]:
    """``copies`` copies of a week with fresh ids (a duplicate event stays a duplicate
    within its copy); every need carries a resident contact of its own."""
    out: list[bytes] = []
    for copy in range(copies):
        suffix = f"-{tag}{copy}"
        for number, raw in enumerate(lines):
            event = json.loads(raw)
            event["event_id"] += suffix
            for field in ("need_id", "volunteer_id", "assignment_id"):
                if field in event:
                    event[field] += suffix
            if event["type"] == "need.posted":
                event["contact"] = contact_of(copy, number, tag)
            out.append(encode(event))
    return out


def competition_week() -> list[bytes]:
    """15 volunteers with short windows and small caps, then 150 needs in one community
    whose texts the skill model places in the same three service types."""
    labels = json.loads(DEV_LABELS.read_text())
    dev = [json.loads(x) for x in nonblank(DEV_WEEK.read_bytes())]
    model = build_skill_model(ModelSettings())
    need_texts: dict[str, list[str]] = defaultdict(list)
    skill_texts: dict[str, list[str]] = defaultdict(list)
    for event in dev:
        if event["type"] == "need.posted":
            kinds = labels["needs"].get(event["need_id"], [])
            placed = model.place_need(event["text"]).top
            if kinds == [placed] and placed in COMPETED_TYPES:
                need_texts[placed].append(event["text"])
        elif event["type"] == "volunteer.available":
            for kind in labels["volunteers"].get(event["volunteer_id"], []):
                if kind in COMPETED_TYPES and model.place_volunteer(event["skills"]).get(kind):
                    skill_texts[kind].append(event["skills"])
    assert all(need_texts[t] and skill_texts[t] for t in COMPETED_TYPES), (
        dict(need_texts),
        dict(skill_texts),
    )

    def at(day: int, hour: int, minute: int = 0) -> str:
        return f"2026-12-{day:02d}T{hour:02d}:{minute:02d}:00+08:00"

    volunteers = []
    for i in range(15):
        kind = COMPETED_TYPES[i % len(COMPETED_TYPES)]
        day, hour = 15 + (i // 3) % 3, (9, 14)[(i // 9) % 2]
        volunteers.append(
            {
                "type": "volunteer.available",
                "event_id": f"cv{i}",
                "occurred_at": f"2026-12-10T08:{i:02d}:00+08:00",
                "volunteer_id": f"cv{i}",
                "name": f"志愿者{i}",
                "kind": "party_member",
                "skills": skill_texts[kind][i % len(skill_texts[kind])],
                "community": COMMUNITY,
                "availability": [{"start": at(day, hour), "end": at(day, hour + 2)}],
                "max_hours_per_week": (1, 1.5)[i % 2],
            }
        )
    needs = []
    for j in range(150):
        kind = COMPETED_TYPES[j % len(COMPETED_TYPES)]
        day, (start, end) = 15 + (j // 3) % 3, ((8, 12), (13, 17))[(j // 9) % 2]
        needs.append(
            {
                "type": "need.posted",
                "event_id": f"cn{j}",
                "occurred_at": f"2026-12-11T{8 + j // 60:02d}:{j % 60:02d}:00+08:00",
                "need_id": f"cn{j}",
                "community": COMMUNITY,
                "text": need_texts[kind][j % len(need_texts[kind])],
                "window": {"start": at(day, start), "end": at(day, end)},
                "duration_minutes": (30, 45, 60)[j % 3],
                "headcount": 2 if j % 5 == 0 else 1,
                "contact": contact_of(0, j, "cmp"),
            }
        )
    lines = [encode(e) for e in volunteers + needs]
    for raw in lines:
        parse_input(raw)  # raises on an event that does not validate
    return lines


def replay_lines(lines: list[bytes], setup: LiveSetup) -> list[str]:
    """``python -m matcher replay`` over ``lines`` in a fresh process with the worker's
    environment, so both load the same model and catalogue."""
    source, target = setup.workdir / "replay-in.jsonl", setup.workdir / "replay-out.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    done = subprocess.run(
        [sys.executable, "-m", "matcher", "replay", str(source), "--out", str(target)],
        cwd=ROOT,
        env=setup.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [x for x in target.read_text(encoding="utf-8").split("\n") if x.strip()]


# --- checks ----------------------------------------------------------------------------


def tail(*workers: Worker, chars: int = 3000) -> str:
    return "\n".join(f"--- {w.log_path.name} ---\n{w.log()[-chars:]}" for w in workers)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, *workers: Worker) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(
                    f"{worker.log_path.name} exited while waiting for {what}\n{tail(worker)}"
                )
        if condition():
            return
        time.sleep(0.3)
    pytest.fail(f"no {what} after {timeout_s}s\n{tail(*workers)}")


def lag_rows(setup: LiveSetup) -> list[PartitionLag] | None:
    """The group's lag, or None while the broker cannot tell (just restarted: the group
    coordinator is still loading, the leader not elected yet)."""
    try:
        return consumer_lag(setup.bootstrap, setup.group, setup.topics.inputs)
    except KafkaError as exc:
        if getattr(exc, "retriable", False) or isinstance(exc, NoBrokersAvailable):
            return None
        raise


def caught_up(setup: LiveSetup, timeout_s: float, *workers: Worker) -> None:
    """Like ``LiveSetup.wait_caught_up``, but riding out a broker that is coming back and
    failing fast, with the workers' logs, when one of them exits."""
    rows: list[PartitionLag] | None = None

    def done() -> bool:
        nonlocal rows
        rows = lag_rows(setup)
        return (
            bool(rows)
            and all(r.committed is not None or r.log_end == 0 for r in rows or ())
            and sum(r.lag for r in rows or ()) == 0
        )

    deadline = time.monotonic() + timeout_s
    while not done():
        for worker in workers:
            if worker.process.poll() is not None:
                pytest.fail(f"{worker.log_path.name} exited before catching up\n{tail(worker)}")
        if time.monotonic() > deadline:
            lag = [(r.topic, r.partition, r.committed, r.log_end) for r in rows or () if r.lag]
            pytest.fail(f"{setup.group} did not catch up in {timeout_s}s: {lag}\n{tail(*workers)}")
        time.sleep(0.5)


def assert_equal_outputs(live: list[str], expected: list[str], context: str) -> None:
    missing, extra = Counter(expected) - Counter(live), Counter(live) - Counter(expected)
    versions = {
        side: sorted({json.loads(x).get("matcher_version", "-") for x in xs})
        for side, xs in (("live", live), ("replay", expected))
    }
    summary = (
        f"live differs from replay: {len(missing)} missing, {len(extra)} extra; "
        f"matcher versions {versions}\n"
        f"missing: {list(missing)[:3]}\nextra: {list(extra)[:3]}\n{context}"
    )
    assert not missing, summary
    assert not extra, summary


def dedupe_by_event_id(records: list[bytes]) -> tuple[list[bytes], int]:
    """One record per output event_id; a repeated event_id must repeat the same bytes
    (the outbox published again). Returns the unique records and how many repeats."""
    first: dict[str, bytes] = {}
    repeats = 0
    for raw in records:
        event_id = json.loads(raw)["event_id"]
        if event_id in first:
            assert first[event_id] == raw, f"{event_id} published twice with different bytes"
            repeats += 1
        else:
            first[event_id] = raw
    return list(first.values()), repeats


def booking_violations(inputs: list[bytes], outputs: list[bytes]) -> list[str]:
    """Rules 1-3 and the headcount over the bookings that still hold at the end, from the
    events alone (no commit order needed: the last profile of each volunteer counts)."""
    profiles: dict[str, dict[str, Any]] = {}
    needs: dict[str, dict[str, Any]] = {}
    for raw in inputs:
        event = json.loads(raw)
        if event["type"] == "volunteer.available":
            profiles[event["volunteer_id"]] = event
        elif event["type"] == "need.posted":
            needs.setdefault(event["need_id"], event)
    proposed: dict[str, dict[str, Any]] = {}
    cancelled: set[str] = set()
    for raw in outputs:
        event = json.loads(raw)
        if event["type"] == "assignment.proposed":
            proposed[event["assignment_id"]] = event
        elif event["type"] == "assignment.cancelled":
            cancelled.add(event["assignment_id"])
    active = [b for a, b in proposed.items() if a not in cancelled]

    def when(text: str) -> datetime:
        return datetime.fromisoformat(text)

    found: list[str] = []
    slots: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
    per_need: dict[str, list[str]] = defaultdict(list)
    for booking in active:
        need, volunteer = needs[booking["need_id"]], profiles[booking["volunteer_id"]]
        start, end = when(booking["slot"]["start"]), when(booking["slot"]["end"])
        slots[booking["volunteer_id"]].append((start, end, booking["assignment_id"]))
        per_need[booking["need_id"]].append(booking["volunteer_id"])
        if end - start != timedelta(minutes=need["duration_minutes"]):
            found.append(f"{booking['assignment_id']}: slot length")
        if not when(need["window"]["start"]) <= start < end <= when(need["window"]["end"]):
            found.append(f"{booking['assignment_id']}: outside the need's window")
        if not any(
            when(w["start"]) <= start and end <= when(w["end"]) for w in volunteer["availability"]
        ):
            found.append(f"{booking['assignment_id']}: outside the volunteer's windows")
    for volunteer_id, taken in slots.items():
        taken.sort()
        for (_, end_a, a), (start_b, _, b) in pairwise(taken):
            if start_b < end_a:
                found.append(f"double booking of {volunteer_id}: {a} and {b}")
        cap = profiles[volunteer_id].get("max_hours_per_week", 4) * 60
        for week, minutes in weekly_minutes((s, e) for s, e, _ in taken).items():
            if minutes > cap + 1e-6:
                found.append(f"{volunteer_id} booked {minutes} min in week {week} (cap {cap})")
    for need_id, volunteers in per_need.items():
        if len(volunteers) != len(set(volunteers)):
            found.append(f"{need_id} books a volunteer twice")
        if len(volunteers) > needs[need_id].get("headcount", 1):
            found.append(f"{need_id} booked over its headcount")
    return found


def group_members(setup: LiveSetup) -> list[tuple[str, set[tuple[str, int]]]]:
    """(client id, assigned partitions) of each member of the worker's group, when stable."""
    admin = KafkaAdminClient(bootstrap_servers=setup.bootstrap, client_id="faults-test")
    try:
        (group,) = admin.describe_consumer_groups([setup.group])
    finally:
        admin.close()
    if group.state != "Stable":
        return []
    members = []
    for member in group.members:
        assignment = member.member_assignment
        parts = {(t, p) for t, ps in (assignment.assignment if assignment else []) for p in ps}
        members.append((member.client_id, parts))
    return members


def end_offset_total(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


# --- fixtures --------------------------------------------------------------------------


@dataclass
class PinnedSetup(LiveSetup):
    """A ``LiveSetup`` whose workers (and replays) read a copy of the catalogue taken when
    the test starts: the oracle must decide with the very model the workers used."""

    catalogue: Path | None = None

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.catalogue is not None:
            env["VOLMATCH_MODEL__CATALOGUE_PATH"] = str(self.catalogue)
        return env


def live_setup(services: Services, workdir: Path, needs_partitions: int) -> LiveSetup:
    catalogue = workdir / "catalogue"
    shutil.copytree(ROOT / "models" / "catalogue", catalogue)
    # Database 0 with this setup's own key prefix, as in test_live.py.
    url = f"{services.redis_url.rstrip('/').rsplit('/', 1)[0]}/0"
    setup = PinnedSetup(
        services.kafka_bootstrap,
        url,
        workdir,
        needs_partitions=needs_partitions,
        catalogue=catalogue / "catalogue.yaml",
    )
    setup.create_topics()
    return setup


@pytest.fixture
def one_partition(services: Services, tmp_path: Path) -> LiveSetup:
    return live_setup(services, tmp_path, needs_partitions=1)


@dataclass
class CrashRun:
    inputs: list[bytes]
    outputs: list[bytes]
    logs: str
    lag_at_kill: int
    assignments_at_kill: int
    redelivered: int
    expected: list[str]  # the replay of the inputs


@pytest.fixture(scope="module")
def crash_run(services: Services, tmp_path_factory: pytest.TempPathFactory) -> CrashRun:
    """One worker over a large week, SIGKILLed mid-stream, then a new worker in the same
    group finishes it. Shared by the crash test and the personal-data test."""
    workdir = tmp_path_factory.mktemp("crash")
    setup = live_setup(services, workdir, needs_partitions=1)
    volunteers, needs = by_phase(clone_week(nonblank(SAMPLE.read_bytes()), CRASH_COPIES, "k"))
    first = Worker(setup, "w1")
    try:
        first.wait_ready()
        setup.produce(volunteers)
        caught_up(setup, 120, first)
        setup.produce(needs)

        def mid_stream() -> bool:
            return end_offset_total(setup.bootstrap, setup.topics.assignments) >= 100

        wait_for(mid_stream, 120, "assignments before the kill", first)
    finally:
        first.kill()
    lag = sum(r.lag for r in consumer_lag(setup.bootstrap, setup.group, setup.topics.inputs))
    assignments_at_kill = end_offset_total(setup.bootstrap, setup.topics.assignments)
    second = Worker(setup, "w2")
    try:
        second.wait_ready(timeout_s=150)
        caught_up(setup, 180, second)
        outputs = setup.outputs()
    finally:
        assert second.stop() == 0, tail(second)
    return CrashRun(
        inputs=volunteers + needs,
        outputs=outputs,
        logs=first.log() + second.log(),
        lag_at_kill=lag,
        assignments_at_kill=assignments_at_kill,
        redelivered=second.log().count("] redelivered "),
        expected=replay_lines(volunteers + needs, setup),
    )


# --- tests -----------------------------------------------------------------------------


def test_two_workers_share_the_group_without_double_booking(
    services: Services, tmp_path: Path
) -> None:
    setup = live_setup(services, tmp_path, needs_partitions=6)
    lines = competition_week()
    volunteers, needs = by_phase(lines)
    workers = [Worker(setup, "wa"), Worker(setup, "wb")]
    try:
        for worker in workers:
            worker.wait_ready()
        holding: list[tuple[str, set[tuple[str, int]]]] = []

        def both_hold_needs() -> bool:
            holding[:] = group_members(setup)
            return len(holding) == 2 and all(
                any(t == setup.topics.needs for t, _ in parts) for _, parts in holding
            )

        wait_for(both_hold_needs, 90, "two members each holding needs partitions", *workers)
        setup.produce(volunteers)
        caught_up(setup, 120, *workers)
        setup.produce(needs)
        caught_up(setup, 150, *workers)
        assert all(w.process.poll() is None for w in workers), tail(*workers)
        # Still split at the end: both decided needs all along.
        wait_for(both_hold_needs, 30, "both members still holding needs partitions", *workers)
        outputs = setup.outputs()
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0], tail(*workers)
    by_type = Counter(json.loads(o)["type"] for o in outputs)
    assert by_type["record.rejected"] == 0, [o for o in outputs if b"record.rejected" in o][:3]
    assert by_type["assignment.proposed"] >= 10, by_type  # there was something to share
    assert by_type["need.unmatched"] >= 50, by_type  # ... and real competition for it
    holders = sorted(sorted(p for t, p in parts if t == setup.topics.needs) for _, parts in holding)
    assert all(holders), holders
    assert sorted(p for h in holders for p in h) == list(range(6)), holders
    assert not booking_violations(lines, outputs), booking_violations(lines, outputs)
    answered = {json.loads(o).get("need_id") for o in outputs}
    unanswered = {json.loads(n)["need_id"] for n in needs} - answered
    assert not unanswered, sorted(unanswered)


def test_kill_9_mid_stream_then_a_new_worker_gives_the_outputs_exactly_once_in_effect(
    crash_run: CrashRun,
) -> None:
    run = crash_run
    assert run.lag_at_kill > 0, "the worker was not killed mid-stream"
    outputs, repeats = dedupe_by_event_id(run.outputs)
    # The kill came between two offset commits: records were handled again, and their
    # outputs published again from the outbox (same bytes), never decided twice.
    assert run.redelivered > 0, "nothing was redelivered: the crash tested nothing"
    expected = run.expected
    assert len(set(expected)) == len(expected), "replay gives an event_id twice"
    assert_equal_outputs(
        [o.decode() for o in outputs],
        expected,
        f"killed with lag {run.lag_at_kill} after {run.assignments_at_kill} assignments; "
        f"{repeats} outputs published again, {run.redelivered} records redelivered",
    )
    assert not booking_violations(run.inputs, outputs)
    proposals = Counter(
        (e["need_id"], e["volunteer_id"])
        for e in map(json.loads, outputs)
        if e["type"] == "assignment.proposed"
    )
    assert all(n == 1 for n in proposals.values())


def test_no_resident_contact_in_any_output_or_log(crash_run: CrashRun) -> None:
    contacts = [
        value for raw in crash_run.inputs for value in json.loads(raw).get("contact", {}).values()
    ]
    assert len(contacts) > 1000
    haystack = b"\n".join(crash_run.outputs).decode() + "\n" + crash_run.logs
    leaked = [c for c in contacts if c in haystack]
    assert not leaked, leaked[:10]


def restart_while_idle(setup: LiveSetup, restart: Callable[[], None], settle_s: float) -> Worker:
    """Half the needs, a restart while the worker is idle, the other half: the same worker
    process goes on and the outputs equal replay. Returns the (stopped) worker."""
    volunteers, needs = by_phase(nonblank(SAMPLE.read_bytes()))
    half = len(needs) // 2
    worker = Worker(setup)
    try:
        worker.wait_ready()
        setup.produce(volunteers)
        caught_up(setup, 120, worker)
        setup.produce(needs[:half])
        caught_up(setup, 120, worker)
        restart()
        setup.produce(needs[half:])
        caught_up(setup, settle_s, worker)
        assert worker.process.poll() is None, tail(worker)
        live = [v.decode() for v in setup.outputs()]
    finally:
        code = worker.stop()
    assert code == 0, tail(worker)
    assert_equal_outputs(live, replay_lines(volunteers + needs, setup), tail(worker))
    assert any('"assignment.proposed"' in x for x in live)
    return worker


def test_redis_restart_while_idle(services: Services, one_partition: LiveSetup) -> None:
    if not services.manages("redis") or services.local is None:
        pytest.skip("Redis was given from outside: this session cannot restart it")
    local = services.local
    run_ids: list[str] = []

    def restart() -> None:
        client = redis.Redis.from_url(one_partition.redis_url)
        try:
            run_ids.append(str(client.info("server")["run_id"]))
            local.restart_redis()
            run_ids.append(str(client.info("server")["run_id"]))
        finally:
            client.close()

    restart_while_idle(one_partition, restart, 120)
    assert len(set(run_ids)) == 2, f"Redis was not restarted: {run_ids}"


def test_broker_restart_while_idle(services: Services, one_partition: LiveSetup) -> None:
    """aiokafka reconnects by itself (coordinator marked dead, rediscovered, fetch goes
    on): no supervisor restart is needed for a broker that comes back."""
    if not services.manages("kafka") or services.local is None:
        pytest.skip("Kafka was given from outside: this session cannot restart it")
    worker = restart_while_idle(one_partition, services.local.restart_kafka, 180)
    log = worker.log()
    assert "Connect call failed" in log or "KafkaConnectionError" in log, (
        "the worker never saw the broker go away\n" + tail(worker)
    )
