"""``python -m tests.crash --cycles 200``: a long crasher run, reported as JSON and markdown."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.crash.harness import CrashConfig, render_markdown, run_crasher
from tests.reporting import finish


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
    return finish(
        report,
        render_markdown(report),
        work=work,
        failed=bool(report.violations),
        keep=args.keep,
        json_path=args.json,
        markdown_path=args.markdown,
    )


if __name__ == "__main__":
    sys.exit(main())
