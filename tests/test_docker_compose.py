"""The Dockerfile, docker-compose.yml and .dockerignore agree with each other and with the CLI.

No Docker engine is needed: the files are parsed, the image's CMD is parsed by the real
``vecstore`` argument parser, and the compose healthcheck script is run against a real server.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.server_process import new_admin_key, running_server
from vecstore.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
Instruction = tuple[str, str]


def dockerfile() -> list[Instruction]:
    """(INSTRUCTION, arguments) pairs; comments dropped, continuation lines joined."""
    out: list[Instruction] = []
    current = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continuation line"
    return out


def args_of(name: str) -> list[str]:
    return [rest for word, rest in dockerfile() if word == name]


def cmd_argv() -> list[str]:
    cmds = args_of("CMD")
    assert len(cmds) == 1, cmds
    argv = json.loads(cmds[0])  # exec form: the server is PID 1 and receives SIGTERM
    assert isinstance(argv, list)
    assert all(isinstance(a, str) for a in argv)
    return argv


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def service() -> dict[str, Any]:
    services = compose()["services"]
    assert list(services) == ["vecstore"]
    svc: dict[str, Any] = services["vecstore"]
    return svc


def environment() -> dict[str, str]:
    env = service().get("environment", {})
    if isinstance(env, list):  # the "KEY=value" list form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def serve_args() -> Any:
    argv = cmd_argv()
    return build_parser().parse_args(argv[1:])


def healthcheck_script() -> str:
    test = service()["healthcheck"]["test"]
    assert isinstance(test, list)
    assert test[0] == "CMD", "exec form: no shell is needed in the image"
    assert test[1:3] == ["python", "-c"], test
    assert len(test) == 4
    script: str = test[3]
    return script


# -- Dockerfile -------------------------------------------------------------------------------
def test_image_is_python_311_slim_and_runs_as_a_non_root_user() -> None:
    assert args_of("FROM") == ["python:3.11-slim"]
    users = args_of("USER")
    assert users, "the image must switch to a non-root user"
    assert users[-1] not in {"root", "0", "0:0"}
    words = [w for w, _ in dockerfile()]
    last_user = len(words) - 1 - words[::-1].index("USER")
    assert "RUN" not in words[last_user:], "nothing should run as root after USER"
    assert words.index("CMD") > last_user


def test_image_copies_the_package_and_the_migrations_and_installs_it() -> None:
    copies = [shlex.split(c) for c in args_of("COPY")]
    workdir = Path(args_of("WORKDIR")[-1])
    placed: dict[str, Path] = {}
    for parts in copies:
        *sources, dest = parts
        for src in sources:
            target = workdir / dest
            placed[src] = target / src if dest.endswith("/") or len(sources) > 1 else target
    # pyproject.toml names README.md as the readme: the build needs both.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for needed in ("pyproject.toml", pyproject["project"]["readme"], "vecstore", "migrations"):
        assert needed in placed, f"the Dockerfile does not COPY {needed}"
        assert (ROOT / needed).exists()
    assert placed["vecstore"] == workdir / "vecstore"
    installs = [r for r in args_of("RUN") if "pip install" in r]
    assert len(installs) == 1
    # A regular install of the copied tree: the wheel carries migrations/ as vecstore.migrations
    # (tests/test_packaging.py checks that an installed copy finds and runs them).
    assert re.search(r"pip install (--no-cache-dir )?\.", installs[0]), installs


def test_data_directory_exists_and_belongs_to_the_runtime_user() -> None:
    data_dir = str(serve_args().data_dir)
    user = args_of("USER")[-1].split(":")[0]
    run = " && ".join(args_of("RUN"))
    assert f"mkdir -p {data_dir}" in run
    assert re.search(rf"chown (-R )?{user}(:{user})? {re.escape(data_dir)}\b", run), run


def test_cmd_is_a_valid_serve_command_of_the_real_cli() -> None:
    argv = cmd_argv()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[argv[0]] == "vecstore.cli:main"
    args = serve_args()
    assert args.command == "serve"
    assert (args.host, args.port, args.data_dir) == ("0.0.0.0", 8000, Path("/data"))
    assert args_of("EXPOSE") == [str(args.port)]


def test_cli_parser_rejects_what_the_cmd_must_not_contain() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--port", "eighty"])
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--data_dir", "/data"])
    with pytest.raises(SystemExit):
        parser.parse_args([])


# -- docker-compose.yml -----------------------------------------------------------------------
def test_compose_builds_the_dockerfile_and_publishes_the_served_port() -> None:
    svc = service()
    build = svc["build"]
    context = build if isinstance(build, str) else build["context"]
    dockerfile_name = (
        "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    )
    assert (ROOT / context / dockerfile_name).resolve() == ROOT / "Dockerfile"
    port = serve_args().port
    assert svc["ports"] == [f"{port}:{port}"]


def test_compose_mounts_a_named_volume_at_the_data_directory() -> None:
    mounts = service()["volumes"]
    data_dir = str(serve_args().data_dir)
    at_data = [m for m in mounts if m.split(":")[1] == data_dir]
    assert len(at_data) == 1, mounts
    volume = at_data[0].split(":")[0]
    assert not volume.startswith((".", "/")), "a named volume, not a bind mount"
    assert volume in compose()["volumes"]


def test_compose_requires_the_admin_key_from_the_environment() -> None:
    value = environment()["VECSTORE_ADMIN_KEY"]
    # ":?" makes `docker compose up` fail with the message when the variable is unset or empty.
    assert re.fullmatch(r"\$\{VECSTORE_ADMIN_KEY:\?[^}]+\}", value), value
    assert "VECSTORE_ADMIN_KEY" not in " ".join(args_of("ENV")), "no key baked into the image"


def test_compose_healthcheck_requests_health_with_python_on_the_served_port() -> None:
    check = service()["healthcheck"]
    script = healthcheck_script()
    compile(script, "<healthcheck>", "exec")
    assert f"127.0.0.1:{serve_args().port}/health'" in script
    assert "curl" not in script
    assert "wget" not in script
    for key in ("interval", "timeout", "retries"):
        assert key in check


def test_healthcheck_script_passes_against_a_live_server_and_fails_without_one(
    tmp_path: Path,
) -> None:
    script = healthcheck_script()
    with running_server(tmp_path / "data", admin_key=new_admin_key()) as server:
        live = script.replace(":8000/", f":{server.port}/")
        result = subprocess.run(
            [sys.executable, "-c", live], capture_output=True, timeout=30, check=False
        )
        assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [sys.executable, "-c", live], capture_output=True, timeout=30, check=False
    )
    assert result.returncode != 0


# -- .dockerignore ----------------------------------------------------------------------------
def _ignored(path: str, patterns: list[str]) -> bool:
    hit = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        matches = any(
            fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/")) for p in prefixes
        )
        if matches:
            hit = not negate
    return hit


def test_dockerignore_keeps_secrets_and_local_state_out_but_not_the_sources() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (".venv", ".git", "data", "data/admin.key", "admin.key", ".env", "x/__pycache__"):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    copied = [src for c in args_of("COPY") for src in shlex.split(c)[:-1]]
    for path in [*copied, "README.md", "vecstore/storage/engine.py", "migrations/env.py"]:
        assert not _ignored(path, patterns), f"{path} is copied by the Dockerfile but ignored"
