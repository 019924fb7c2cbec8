"""``vecstore serve`` (also ``python -m vecstore serve``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vecstore.settings import Settings
from vecstore.storage.heap import set_arena_max


def serve_argv(host: str, port: int, data_dir: Path) -> list[str]:
    """The command that starts a server with this interpreter (tests and benchmarks use it)."""
    return [
        sys.executable,
        "-m",
        "vecstore",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]


def build_parser() -> argparse.ArgumentParser:
    """The command line; tests parse the Docker image's CMD with it."""
    parser = argparse.ArgumentParser(prog="vecstore", description="vecstore vector database")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="bind address (VECSTORE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (VECSTORE_PORT, default 8000)")
    serve.add_argument("--data-dir", type=Path, help="data directory (VECSTORE_DATA_DIR)")
    serve.add_argument("--log-level", help="log level (VECSTORE_LOG_LEVEL, default INFO)")
    restore = sub.add_parser(
        "restore",
        help="replace a stopped server's data by a snapshot (verified, staged, swapped)",
        description=(
            "Restore a snapshot into a data directory whose server is stopped. The snapshot is"
            " verified, copied into the data directory and verified again before anything is"
            " replaced; the replaced files are kept in pre-restore-<time>/. A running server"
            " restores online with POST /v1/admin/snapshots/{id}/restore instead."
        ),
    )
    restore.add_argument("snapshot", nargs="?", help="snapshot id (see --list)")
    restore.add_argument("--data-dir", type=Path, help="data directory (VECSTORE_DATA_DIR)")
    restore.add_argument(
        "--snapshot-dir", type=Path, help="where snapshots are (VECSTORE_SNAPSHOT_DIR)"
    )
    restore.add_argument("--list", action="store_true", help="list the snapshots and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve_command(args)
    if args.command == "restore":
        return restore_command(args)
    return 2


def restore_command(args: argparse.Namespace) -> int:
    from vecstore.storage import snapshots
    from vecstore.storage.data_lock import DataDirBusy, DataDirLock

    try:
        settings = Settings.from_env(data_dir=args.data_dir, snapshot_dir=args.snapshot_dir)
    except ValueError as exc:
        print(f"vecstore: {exc}", file=sys.stderr)
        return 2
    store = snapshots.SnapshotStore(settings.resolved_snapshot_dir)
    if args.list:
        for m in store.list():
            names = ", ".join(f"{c.name} ({c.vector_count})" for c in m.collections)
            print(f"{m.id}  {m.created_at}  {m.size_bytes} bytes  {names or '(no collections)'}")
        return 0
    if not args.snapshot:
        print("vecstore: name the snapshot to restore (or --list)", file=sys.stderr)
        return 2
    if settings.database_url:
        print("vecstore: restore needs the embedded SQLite catalog", file=sys.stderr)
        return 2
    try:
        with DataDirLock(settings.data_dir):
            manifest = store.manifest(args.snapshot)
            data_dir = settings.data_dir.resolve()
            # First finish any earlier restore a crash interrupted (and clear its staging).
            snapshots.recover(data_dir, settings.index_dir.resolve())
            staging = snapshots.stage(store.path_of(args.snapshot), manifest, data_dir)
            aside = snapshots.swap_in(data_dir, staging, settings.index_dir.resolve())
    except DataDirBusy as exc:
        print(f"vecstore: {exc}; or restore online through the API", file=sys.stderr)
        return 1
    except snapshots.SnapshotError as exc:
        print(f"vecstore: {exc}; nothing was restored", file=sys.stderr)
        return 1
    print(f"restored {manifest.id} into {data_dir}; the replaced data is in {aside}")
    return 0


def prepare_process(settings: Settings) -> None:
    """What must happen before FAISS, numpy and their thread pools are loaded."""
    # OpenMP reads this once, when FAISS loads it: its worker threads then sleep between
    # parallel regions instead of spinning for a while, so a batched search or an index add
    # leaves the cores to the requests (docs/architecture.md, "Concurrency"). An operator's
    # own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # A thread keeps the malloc arena it first gets, and numpy's BLAS starts threads when it is
    # imported: only a cap set before that binds every thread (vecstore.storage.heap).
    set_arena_max(settings.heap_arena_max)


def serve_command(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(
            host=args.host, port=args.port, data_dir=args.data_dir, log_level=args.log_level
        )
    except ValueError as exc:
        print(f"vecstore: {exc}", file=sys.stderr)
        return 2
    prepare_process(settings)
    import uvicorn

    from vecstore.app import create_app
    from vecstore.bootstrap import ensure_admin_key
    from vecstore.errors import VecstoreError
    from vecstore.inference.registry import RegistryError
    from vecstore.logs import configure_logging
    from vecstore.storage.data_lock import DataDirBusy, DataDirLock

    configure_logging(settings.log_level, settings.log_json)
    if settings.auth_enabled and not settings.admin_key:
        key, generated = ensure_admin_key(settings.data_dir)
        settings = Settings.from_env(
            host=settings.host,
            port=settings.port,
            data_dir=settings.data_dir,
            log_level=settings.log_level,
            admin_key=key,
        )
        where = settings.data_dir / "admin.key"
        if generated:
            print(f"vecstore admin key (generated into {where}):\n  {key}", flush=True)
        else:
            # Printed once only: stdout of a service ends up in log collectors (docker, journald).
            print(f"vecstore admin key: read from {where}", flush=True)
    lock = DataDirLock(settings.data_dir)
    try:
        lock.acquire()  # held until the process exits
    except DataDirBusy as exc:
        print(f"vecstore: {exc}", file=sys.stderr)
        return 1
    try:
        app = create_app(settings)
    except (RegistryError, VecstoreError) as exc:  # a bad model registry or default model
        print(f"vecstore: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        # vecstore reads no X-Forwarded-* header (its logs and rate limits go by key, not by
        # address): skip uvicorn's per-request parsing of them.
        proxy_headers=False,
        timeout_graceful_shutdown=30,
    )
    return 0
