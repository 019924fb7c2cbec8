"""The server exempts its start-up heap from the garbage collector, and gives it back at
shutdown (vecstore/gc_freeze.py)."""

from __future__ import annotations

import gc
import time

from litestar.testing import TestClient

from tests.conftest import wait_ready
from vecstore.app import create_app
from vecstore.settings import Settings


def test_startup_objects_are_frozen_until_shutdown(settings: Settings) -> None:
    gc.unfreeze()
    app = create_app(settings)
    with TestClient(app=app) as client:
        wait_ready(client)
        deadline = time.monotonic() + 30
        while gc.get_freeze_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the freeze follows the engine's opening, in the same thread
        frozen = gc.get_freeze_count()
        # The app itself is among them: a full collection no longer visits it.
        assert frozen > 1000
        assert not any(o is app for o in gc.get_objects())
        assert client.get("/health").status_code == 200
    assert gc.get_freeze_count() == 0
