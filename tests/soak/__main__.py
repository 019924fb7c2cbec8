"""``python -m tests.soak --duration 600``: the long soak, reported as JSON and markdown."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from tests.soak.harness import SoakConfig, render_markdown, run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--markdown", type=Path, help="write the report table here")
    args = parser.parse_args(argv)
    config = SoakConfig(clients=args.clients, duration_s=args.duration, seed=args.seed)
    work = Path(tempfile.mkdtemp(prefix="vecstore-soak-"))
    report = run_soak(config, work / "data", work / "logs")
    table = render_markdown(report)
    print(table)
    if args.json:
        args.json.write_text(report.to_json() + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")
    if report.failures:
        print(f"data and server logs kept in {work}", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
