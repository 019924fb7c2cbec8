"""Every benchmark suite, for ``make bench``. Today that is the core suite; arguments pass through.

python -m benchmarks.run_all [--n 100000] [--queries 500] [--out benchmarks/results]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from benchmarks import run_core


def main(argv: Sequence[str] | None = None) -> int:
    return run_core.main(argv)


if __name__ == "__main__":
    sys.exit(main())
