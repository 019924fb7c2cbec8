"""``python -m tests.crash --cycles 200``: a long crasher run, reported as JSON and markdown."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from tests.crash.harness import CrashConfig, render_markdown, run_crasher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.crash", description=__doc__)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--p-kill", type=float, default=0.3)
    parser.add_argument("--min-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--max-interval", type=float, default=5.0, help="seconds")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--markdown", type=Path, help="write the report table here")
    parser.add_argument("--keep", action="store_true", help="keep the data and logs")
    args = parser.parse_args(argv)
    config = CrashConfig(
        cycles=args.cycles,
        seed=args.seed,
        workers=args.workers,
        p_kill=args.p_kill,
        interval_s=(args.min_interval, args.max_interval),
    )
    work = Path(tempfile.mkdtemp(prefix="vecstore-crash-"))
    report = run_crasher(config, work / "data", work / "logs")
    table = render_markdown(report)
    print(table)
    if args.json:
        args.json.write_text(report.to_json() + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")
    if report.violations or args.keep:
        print(f"data and server logs kept in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
