"""``python -m schemas export DIR``: JSON Schema files for the teams that emit our input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from schemas.jsonschema import export_schemas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas",
        description="Event contract v1 tools. Upstream teams validate their events against "
        "the JSON Schema files that `export` writes, one per event type.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write <type>.schema.json for every event type")
    export.add_argument("dir", type=Path, help="output folder (created if missing)")
    args = parser.parse_args(argv)
    for path in export_schemas(args.dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
