"""What the numbers were measured on: CPU, RAM, interpreter and library versions."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("vecstore", "faiss-cpu", "numpy", "litestar", "uvicorn", "msgspec", "httpx")


def describe() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "ram_gb": _ram_gb(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in _PACKAGES},
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_busy_s() -> tuple[float, float]:
    """Machine-wide (busy, stolen) CPU seconds since boot, from /proc/stat; (0, 0) elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hz, steal / hz


def process_cpu_s(pid: int | None) -> float:
    """utime + stime of a process, all its threads, in seconds (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and its reaped children (a finished server, the peer)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


_ECHO = (
    "import os, sys\n"
    "if len(sys.argv) > 1:\n"
    "    os.sched_setaffinity(0, {int(sys.argv[1])})\n"
    "while True:\n"
    "    b = os.read(0, 1)\n"
    "    if not b:\n"
    "        break\n"
    "    os.write(1, b)\n"
)


def round_trip_us(trips: int = 1000) -> dict[str, float]:
    """p50 and p90 of a one-byte round trip to another process on another CPU, over pipes, in
    µs: the wake-ups every request to a server pays twice. On this shared VM such wake-ups
    drift from tens of µs to over 1 ms with the host's load (an idle vCPU must be scheduled
    again) while CPU counters look idle, and a client-server benchmark's latency drifts with
    them; so the comparison records this beside each system's passes. The calling thread is
    pinned to one CPU for the probe (and unpinned after), the echo process to another."""
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2
    argv = [sys.executable, "-c", _ECHO] + ([str(cpus[1])] if pinned else [])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    if pinned:
        os.sched_setaffinity(0, {cpus[0]})
    assert proc.stdin is not None
    assert proc.stdout is not None
    out_fd, in_fd = proc.stdin.fileno(), proc.stdout.fileno()
    lat = []
    try:
        for _ in range(trips):
            t = time.perf_counter()
            os.write(out_fd, b"x")
            if os.read(in_fd, 1) != b"x":
                break
            lat.append(time.perf_counter() - t)
    finally:
        if pinned:
            os.sched_setaffinity(0, set(cpus))
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()
    lat.sort()
    if not lat:
        return {"p50": float("nan"), "p90": float("nan")}
    return {
        "p50": round(lat[len(lat) // 2] * 1e6, 1),
        "p90": round(lat[int(len(lat) * 0.9)] * 1e6, 1),
    }


def wait_for_quiet(
    max_wait_s: float,
    *,
    threshold_cores: float = 0.25,
    window_s: float = 2.0,
    max_round_trip_us: float | None = None,
) -> dict[str, Any]:
    """On a shared machine: wait (at most ``max_wait_s``) until the CPU that other processes
    use over a ``window_s`` window is below ``threshold_cores`` and, when
    ``max_round_trip_us`` is given, the median process round trip (``round_trip_us``) is
    below it. Returns what it saw."""
    start = time.monotonic()
    other = float("nan")
    while True:
        busy0, own0, t0 = cpu_busy_s()[0], own_cpu_s(), time.monotonic()
        time.sleep(window_s)
        busy1, own1, t1 = cpu_busy_s()[0], own_cpu_s(), time.monotonic()
        other = max((busy1 - busy0) - (own1 - own0), 0.0) / (t1 - t0)
        trip = round_trip_us() if max_round_trip_us is not None else None
        quiet = other < threshold_cores and (
            max_round_trip_us is None or (trip is not None and trip["p50"] < max_round_trip_us)
        )
        waited = time.monotonic() - start
        if quiet or waited >= max_wait_s:
            seen: dict[str, Any] = {
                "waited_s": round(waited, 1),
                "other_cores": round(other, 3),
                "quiet": quiet,
            }
            if trip is not None:
                seen["round_trip_us"] = trip
            return seen


def cpu_counters() -> dict[str, float]:
    """Readings that ``background_load`` turns into what the rest of the machine used."""
    busy, steal = cpu_busy_s()
    return {
        "busy_s": busy,
        "steal_s": steal,
        "own_s": own_cpu_s(),
        "wall_s": time.monotonic(),
    }


def background_load(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU the rest of the machine used while the benchmark ran: busy CPU seconds minus this
    run's own (itself, the servers, the peer). The machine is shared, so this says how quiet it
    was; ``steal`` is time the hypervisor gave to other guests."""
    wall = after["wall_s"] - before["wall_s"]
    other = (after["busy_s"] - before["busy_s"]) - (after["own_s"] - before["own_s"])
    return {
        "wall_s": wall,
        "other_processes_cpu_s": max(other, 0.0),
        "other_processes_cores_mean": max(other, 0.0) / wall if wall > 0 else 0.0,
        "steal_cores_mean": (after["steal_s"] - before["steal_s"]) / wall if wall > 0 else 0.0,
        "loadavg_end": float(Path("/proc/loadavg").read_text().split()[0]),
    }
