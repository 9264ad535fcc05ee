"""``python -m streams``: run the live worker and talk to its topics.

Commands:
  worker              consume volunteers, needs and assignment-responses; publish
                      assignments, needs-unmatched and dead-letters (runs until SIGTERM)
  topics              create the contract's topics with their partition counts
  produce FILE.jsonl  publish input events to the right topics with the right keys
  tail TOPIC          print a topic's events readably
  lag                 committed offset, log-end offset and lag per partition of the group
  report              wait until caught up, then print assignments, unmatched needs, lag
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from matcher.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streams",
        description="The live matching service on Kafka and Redis. Settings come from the "
        "environment: VOLMATCH_KAFKA__BOOTSTRAP_SERVERS (localhost:9092), "
        "VOLMATCH_REDIS__URL (redis://localhost:6379/0), VOLMATCH_KAFKA__GROUP_ID (volmatch).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    worker = sub.add_parser(
        "worker",
        help="run the matching worker until SIGTERM (with /metrics, /healthz, /readyz and, "
        "when coordinator tokens are set, the coordinator page on VOLMATCH_OPS__PORT)",
    )
    worker.add_argument(
        "--datadir",
        type=Path,
        default=Path(".state/faust"),
        help="faust's local data folder (default .state/faust)",
    )
    sub.add_parser("topics", help="create the contract's topics")
    produce = sub.add_parser("produce", help="publish a JSONL file of input events")
    produce.add_argument("file", type=Path)
    tail = sub.add_parser("tail", help="print a topic's events readably")
    tail.add_argument("topic", help="e.g. assignments, needs-unmatched, dead-letters")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds without a new record (default: never)",
    )
    lag = sub.add_parser(
        "lag",
        help="consumer lag of the service's group, per partition",
        description="Committed offset, log-end offset, lag in records and in seconds (age of "
        "the oldest unconsumed record) per input partition, as kafka-consumer-groups.sh "
        "shows them. Exit codes: 0 fine, 2 a threshold crossed, 3 the broker unreachable.",
    )
    lag.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    lag.add_argument("--watch", type=float, metavar="S", help="refresh every S seconds")
    lag.add_argument("--max-lag", type=int, metavar="N", help="exit 2 when a partition lags > N")
    lag.add_argument(
        "--max-seconds",
        type=float,
        metavar="S",
        help="exit 2 when a partition's oldest unconsumed record is older than S",
    )
    report = sub.add_parser(
        "report", help="wait until the worker has caught up, then print what it published"
    )
    report.add_argument("--timeout", type=float, default=120.0, metavar="S")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kafka-python logs every connection attempt; the tools say what failed in one line.
    logging.getLogger("kafka").setLevel(
        logging.WARNING if args.command == "worker" else logging.CRITICAL
    )
    from streams import worker as live

    topics = live.topics_of(settings)
    bootstrap = settings.kafka.bootstrap_servers
    if args.command == "worker":
        live.run_worker(settings, datadir=args.datadir)
        return 0
    if args.command == "topics":
        created = live.ensure_topics(settings)
        print("created: " + (", ".join(created) or "none (all exist)"))
        return 0
    if args.command == "produce":
        from streams.io import produce_file

        for topic, count in produce_file(args.file, bootstrap, topics).items():
            print(f"{count:>6} records -> {topic}")
        return 0
    if args.command == "tail":
        from streams.io import print_event, tail_topic

        name = args.topic if args.topic.startswith(topics.prefix) else topics.prefix + args.topic
        for partition, offset, value in tail_topic(
            name, bootstrap, from_beginning=args.from_beginning, idle_timeout_s=args.idle_timeout
        ):
            print_event(partition, offset, value, sys.stdout)
        return 0
    if args.command == "report":
        from streams.report import print_report

        return print_report(bootstrap, settings.kafka.group_id, topics, args.timeout, sys.stdout)
    from streams.lag import run_lag_command

    return run_lag_command(
        bootstrap,
        settings.kafka.group_id,
        topics.inputs,
        as_json=args.json,
        watch_s=args.watch,
        max_lag=args.max_lag,
        max_seconds=args.max_seconds,
        out=sys.stdout,
    )


if __name__ == "__main__":
    sys.exit(main())
