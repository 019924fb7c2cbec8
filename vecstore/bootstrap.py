"""First-start set-up: the bootstrap admin key (never a built-in default)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from vecstore.services.keys import new_secret

ADMIN_KEY_FILE = "admin.key"

log = logging.getLogger("vecstore.bootstrap")


def ensure_admin_key(data_dir: Path) -> tuple[str, bool]:
    """Read ``<data_dir>/admin.key``, creating it (mode 0600) on first start.

    Returns the key and whether it was generated now.
    """
    path = data_dir / ADMIN_KEY_FILE
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            # Like ssh with a private key: a key other local users can read is not a secret.
            log.warning(
                "%s was readable by others (mode %o); made it owner-only (0600)", path, mode
            )
            path.chmod(0o600)
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    key = new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key, True
