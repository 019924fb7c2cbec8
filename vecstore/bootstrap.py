"""First-start set-up: the bootstrap admin key (never a built-in default)."""

from __future__ import annotations

import os
from pathlib import Path

from vecstore.services.keys import new_secret

ADMIN_KEY_FILE = "admin.key"


def ensure_admin_key(data_dir: Path) -> tuple[str, bool]:
    """Read ``<data_dir>/admin.key``, creating it (mode 0600) on first start.

    Returns the key and whether it was generated now.
    """
    path = data_dir / ADMIN_KEY_FILE
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key, True
