"""What every plot module shares: saving a figure, and the two-argument command line. Only the
standard library here (matplotlib is imported by the callers), so the plot modules also run in a
virtualenv that has matplotlib but not vecstore's dependencies."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PlotFn = Callable[[dict[str, Any], Path], None]


def save(fig: Any, png: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)


def cli(plot: PlotFn, usage: str | None, argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.plot_X RESULTS.json OUT.png``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print(usage, file=sys.stderr)
        return 2
    plot(json.loads(Path(args[0]).read_text()), Path(args[1]))
    return 0
