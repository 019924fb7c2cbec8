"""What the long-running harnesses (the crasher, the soak) share: the report's JSON, its markdown
table, and the end of their command lines (print, write the files, keep the data on failure)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any


def report_json(report: Any) -> str:
    """A dataclass report as the JSON committed next to docs/reliability.md."""
    return json.dumps(asdict(report), indent=2, ensure_ascii=False)


def markdown_table(
    rows: Sequence[tuple[str, object]], problems: Sequence[str], heading: str
) -> str:
    """``| measure | value |`` rows, then up to 50 problems under ``heading``."""
    lines = ["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    if problems:
        lines += ["", f"{heading}:", ""] + [f"- {p}" for p in problems[:50]]
    return "\n".join(lines) + "\n"


def finish(
    report: Any,
    table: str,
    *,
    work: Path,
    failed: bool,
    keep: bool = False,
    json_path: Path | None = None,
    markdown_path: Path | None = None,
) -> int:
    """Print the table, write the files asked for; keep ``work`` (data, server logs) when the
    run failed or ``keep``, else remove it. Returns the exit status."""
    print(table)
    if json_path:
        json_path.write_text(report_json(report) + "\n", encoding="utf-8")
    if markdown_path:
        markdown_path.write_text(table, encoding="utf-8")
    if failed or keep:
        print(f"data and server logs kept in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0
