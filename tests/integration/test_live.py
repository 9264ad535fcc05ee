"""The live pipeline on real Kafka and Redis decides exactly as the replay command."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from matcher.engine import Engine
from matcher.replay import replay, split_lines
from matcher.settings import ModelSettings
from matcher.state import InMemoryStore
from models.factory import build_skill_model
from schemas.codec import dump_output
from tests.integration.live import LiveSetup, Worker

if TYPE_CHECKING:
    from tests.integration.conftest import Services

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "week.jsonl"


def by_phase(raw: bytes) -> list[bytes]:
    """Volunteer events first, then needs: on a one-partition needs topic the worker then
    sees the needs in the same order as replay does."""
    lines = [x for x in raw.split(b"\n") if x.strip()]
    volunteers = [x for x in lines if b'"volunteer.' in x]
    return volunteers + [x for x in lines if x not in volunteers]


def replay_lines(lines: list[bytes]) -> list[str]:
    engine = Engine(InMemoryStore(), build_skill_model(ModelSettings()))
    return [dump_output(e) for e in replay(split_lines(b"\n".join(lines)), engine)]


@pytest.fixture
def setup(services: Services, tmp_path: Path, redis_client: object) -> LiveSetup:
    url = f"{services.redis_url.rstrip('/').rsplit('/', 1)[0]}/0"
    live = LiveSetup(services.kafka_bootstrap, url, tmp_path, needs_partitions=1)
    live.create_topics()
    return live


def test_live_output_equals_replay(setup: LiveSetup) -> None:
    lines = by_phase(SAMPLE.read_bytes())
    volunteers = [x for x in lines if b'"volunteer.' in x]
    worker = Worker(setup)
    try:
        worker.wait_ready()
        setup.produce(volunteers)
        setup.wait_caught_up()
        setup.produce(lines[len(volunteers) :])
        setup.wait_caught_up()
        live = [v.decode() for v in setup.outputs()]
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    expected = replay_lines(lines)
    missing, extra = Counter(expected) - Counter(live), Counter(live) - Counter(expected)
    assert not missing, (list(missing), list(extra))
    assert not extra, list(extra)
    assert any('"assignment.proposed"' in x for x in live)


def test_malformed_records_are_dead_lettered_and_the_worker_goes_on(setup: LiveSetup) -> None:
    good = by_phase(SAMPLE.read_bytes())
    bad = (
        [b"not json %d" % i for i in range(300)]
        + [
            json.dumps(
                {
                    "type": "need.posted",
                    "event_id": f"bad{i}",
                    "need_id": f"b{i}",
                    "contact": {"phone": "13800001111"},
                }
            ).encode()
            for i in range(300)
        ]
        + [b'{"type": "volunteer.available", "event_id": "x%d"}' % i for i in range(400)]
    )
    mixed = [x for pair in zip(bad[: len(good)], good, strict=False) for x in pair] + bad[
        len(good) :
    ]
    worker = Worker(setup)
    try:
        worker.wait_ready()
        setup.produce(mixed)
        setup.wait_caught_up(timeout_s=300)
        assert worker.process.poll() is None
        dead = setup.read_all(setup.topics.dead_letters)
        outputs = setup.outputs()
    finally:
        worker.stop()
    assert len(dead) >= len(bad)
    assert all(json.loads(d)["type"] == "record.rejected" for d in dead)
    everything = b"\n".join(outputs) + worker.log().encode()
    assert b"13800001111" not in everything
    assert any(b'"assignment.proposed"' in o for o in outputs)


def test_ops_endpoints_report_health_and_lag(setup: LiveSetup) -> None:
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    worker = Worker(setup, ops_port=port)
    base = f"http://127.0.0.1:{port}"
    try:
        worker.wait_ready()
        setup.produce(by_phase(SAMPLE.read_bytes()))
        setup.wait_caught_up()
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            assert response.status == 200
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
                text = response.read().decode()
            if "kafka_consumergroup_lag{" in text and "volmatch_up 1.0" in text:
                break
            time.sleep(1)
        assert "volmatch_assignments_proposed_total" in text
        assert f'kafka_consumergroup_lag{{consumergroup="{setup.group}"' in text
        assert "volmatch_up 1.0" in text
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
            assert json.loads(response.read())["ready"] is True
    finally:
        worker.stop()


def test_lag_equals_kafkas_own_consumer_groups_tool(setup: LiveSetup) -> None:
    """Our lag numbers are those of Kafka's ConsumerGroupCommand for the same group."""
    import subprocess

    from streams.infra import default_cache_dir
    from streams.lag import consumer_lag

    worker = Worker(setup)
    try:
        worker.wait_ready()
        setup.produce(by_phase(SAMPLE.read_bytes()))
        setup.wait_caught_up()
    finally:
        worker.stop()
    # The group is idle now, so both tools see the same committed and end offsets.
    setup.produce([b"not json, left unconsumed on purpose"])
    libs = sorted(default_cache_dir().glob("kafka-*/lib"))
    assert libs, "scripts/services.sh fetch has not run"
    result = subprocess.run(
        [
            "java",
            "-cp",
            f"{libs[-1]}/*",
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            "--bootstrap-server",
            setup.bootstrap,
            "--describe",
            "--group",
            setup.group,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    theirs = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[0] == setup.group and parts[2].isdigit():
            current = None if parts[3] == "-" else int(parts[3])
            theirs[(parts[1], int(parts[2]))] = (current, int(parts[4]), parts[5])
    ours = {
        (r.topic, r.partition): r
        for r in consumer_lag(setup.bootstrap, setup.group, setup.topics.inputs)
    }
    assert theirs, result.stdout
    for key, (current, log_end, lag) in theirs.items():
        row = ours[key]
        assert (row.committed, row.log_end) == (current, log_end), key
        if lag != "-":
            assert row.lag == int(lag), key
