"""Every benchmark suite, for ``make bench``: the core suite, the embedding suite, then the
document-rerank suite.

python -m benchmarks.run_all [--suites core,embed,rerank] [--peer-python PATH] [--embed-smoke]
                             [--rerank-smoke] [--out DIR] [core options]

Options other than these pass through to ``run_core``. The embedding suite gets ``--out``,
``--peer-python`` (default ``.venv-bench/bin/python`` when that exists; otherwise the reference
peer is skipped, with a note in the report) and, with ``--embed-smoke``, ``--smoke``. The rerank
suite gets ``--out`` and, with ``--rerank-smoke``, ``--smoke``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks import run_core, run_embed, run_rerank

SUITES = ("core", "embed", "rerank")
DEFAULT_PEER = Path(__file__).resolve().parent.parent / ".venv-bench" / "bin" / "python"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run_all", add_help=False)
    p.add_argument("--suites", default=",".join(SUITES))
    p.add_argument("--peer-python", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--embed-smoke", action="store_true", help="the embedding suite's --smoke")
    p.add_argument("--rerank-smoke", action="store_true", help="the rerank suite's --smoke")
    args, rest = p.parse_known_args(argv)
    suites = [s.strip() for s in args.suites.split(",") if s.strip()]
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        p.error(f"unknown suites {unknown}; known: {', '.join(SUITES)}")
    out = ["--out", str(args.out)] if args.out else []
    code = 0
    if "core" in suites:
        code = run_core.main([*rest, *out]) or code
    if "embed" in suites:
        peer = args.peer_python or (DEFAULT_PEER if DEFAULT_PEER.exists() else None)
        embed = [*out, *(["--peer-python", str(peer)] if peer else [])]
        code = run_embed.main([*embed, *(["--smoke"] if args.embed_smoke else [])]) or code
    if "rerank" in suites:
        code = run_rerank.main([*out, *(["--smoke"] if args.rerank_smoke else [])]) or code
    return code


if __name__ == "__main__":
    sys.exit(main())
