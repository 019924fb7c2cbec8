"""The end of every benchmark run: write the JSON and markdown, draw the plot (in process, or
with another python that has matplotlib), print the report. Also re-rendering a committed JSON
(``--render``) without measuring anything."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import machine

REPO_ROOT = Path(__file__).resolve().parent.parent


def closing_notes(
    results: dict[str, Any], counters: dict[str, float], *, smoke: bool, effect: str
) -> list[str]:
    """Record the machine's background load since ``counters`` (``machine.cpu_counters()`` at
    the start) in ``results`` and return the notes every report ends with: a smoke run, and
    other processes' CPU when it was enough to move the figures (``effect`` says how)."""
    notes = []
    if smoke:
        notes.append("Smoke run (--smoke): small counts, figures are not representative.")
    load = machine.background_load(counters, machine.cpu_counters())
    results["background_load"] = load
    if load["other_processes_cores_mean"] > 0.1:
        notes.append(
            f"Other processes used {load['other_processes_cores_mean']:.2f} of the "
            f"{results['machine']['nproc']} CPUs on average during the run: {effect} "
            "than on a quiet machine."
        )
    return notes


def rerendered(path: Path, report: ModuleType) -> dict[str, Any]:
    """A finished run's results, with what the report derives recomputed from its figures."""
    results: dict[str, Any] = json.loads(path.read_text())
    results.pop("targets", None)  # recomputed on writing
    results["analysis"] = report.analysis(results)
    results["notes"] = [n for n in results.get("notes", []) if not n.startswith("No plot")]
    return results


def draw(module: str, json_path: Path, png: Path, pythons: Sequence[Path | None]) -> str | None:
    """Draw ``benchmarks.<module>``'s figure in process when matplotlib is here, else with the
    first of ``pythons`` that exists. Returns why it was not drawn, or None."""
    try:
        plot = __import__(f"benchmarks.{module}", fromlist=["plot"]).plot
        plot(json.loads(json_path.read_text()), png)
        return None
    except ImportError:
        pass
    python = next((p for p in pythons if p is not None and p.exists()), None)
    if python is None:
        tried = ", ".join(str(p) for p in pythons if p is not None) or "none given"
        return f"matplotlib is not installed here, nor in another python (tried: {tried})"
    cmd = [str(python), "-m", f"benchmarks.{module}", str(json_path), str(png)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, check=False, timeout=300)
    return None if proc.returncode == 0 else f"{' '.join(cmd)} exited with {proc.returncode}"


def publish(
    results: dict[str, Any],
    *,
    out: Path,
    stem: str,
    png: Path | None,
    report: ModuleType,
    draw_png: Callable[[Path, Path], str | None],
) -> int:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out``, then the plot (``png`` None: no
    plot), rewriting both with a note when it could not be drawn; print the report."""
    results["plot"] = png.name if png is not None else None
    json_path, md_path = report.write(results, out, stem)
    why = draw_png(json_path, png) if png is not None else None
    if why:
        results["plot"] = None
        results["notes"].append(f"No plot: {why}.")
        json_path, md_path = report.write(results, out, stem)
    print()
    print(report.markdown(results))
    print(report.targets_text(results))
    drawn = f" and {png}" if png is not None and not why else ""
    print(f"\nwrote {json_path}, {md_path}{drawn}")
    return 0
