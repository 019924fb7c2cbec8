"""``vecstore serve`` (also ``python -m vecstore serve``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vecstore.settings import Settings


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve_command(args)
    return 2


def serve_command(args: argparse.Namespace) -> int:
    import uvicorn

    from vecstore.app import create_app
    from vecstore.bootstrap import ensure_admin_key
    from vecstore.errors import VecstoreError
    from vecstore.inference.registry import RegistryError
    from vecstore.logs import configure_logging

    try:
        settings = Settings.from_env(
            host=args.host, port=args.port, data_dir=args.data_dir, log_level=args.log_level
        )
    except ValueError as exc:
        print(f"vecstore: {exc}", file=sys.stderr)
        return 2
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
        verb = "generated" if generated else "read from"
        print(f"vecstore admin key ({verb} {where}):\n  {key}", flush=True)
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
        timeout_graceful_shutdown=30,
    )
    return 0
