"""``python -m tests.soak --duration 600``: the long soak, reported as JSON and markdown."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.reporting import finish
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
    return finish(
        report,
        render_markdown(report),
        work=work,
        failed=bool(report.failures),
        json_path=args.json,
        markdown_path=args.markdown,
    )


if __name__ == "__main__":
    sys.exit(main())
