"""What machine and software a benchmark ran on (recorded in the JSON, shown in the Markdown)."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent


def _cpuinfo() -> dict:
    info = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model") and "model" not in info:
            info["model"] = value
        elif key in ("flags", "Features") and "flags" not in info:
            wanted = {
                "sse4_2",
                "avx",
                "avx2",
                "fma",
                "avx512f",
                "avx512bw",
                "avx512vl",
                "asimd",
                "sve",
            }
            info["flags"] = sorted(set(value.split()) & wanted)
        elif key == "cpu MHz" and "mhz" not in info:
            info["mhz"] = float(value)
        elif key in ("cpu family",) and "family" not in info:
            info["family"] = value
    if "model" not in info:
        if sys.platform == "darwin":
            try:
                info["model"] = subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout.strip()
            except OSError:
                pass
        info.setdefault("model", platform.processor() or platform.machine())
    return info


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def git_info() -> dict:
    def git(*args):
        r = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10
        )
        return r.stdout.strip() if r.returncode == 0 else None

    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def numpy_cpu_features() -> list[str]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as feats
        except ImportError:
            return []
    return sorted(k for k, v in feats.items() if v)


def machine() -> dict:
    cpu = _cpuinfo()
    return {
        "cpu_model": cpu.get("model"),
        "cpu_flags": cpu.get("flags"),
        "cpu_mhz": cpu.get("mhz"),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(usable_cpus()),
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "numpy_cpu_features": numpy_cpu_features(),
        "numpy": np.__version__,
    }


def csoftmax_config() -> dict:
    """show_config(mode="dicts") of the csoftmax that this interpreter imports, or why it cannot."""
    try:
        import csoftmax
    except Exception as exc:
        return {"importable": False, "error": f"{type(exc).__name__}: {exc}"}
    info = {"importable": True, "file": getattr(csoftmax, "__file__", None)}
    native = getattr(csoftmax, "_native", None)
    native_file = getattr(native, "__file__", None)
    if native_file:
        # Identifies the build: a rebuild in place between two workers shows up as two digests.
        with open(native_file, "rb") as f:
            info["native_sha256"] = hashlib.sha256(f.read()).hexdigest()[:16]
        info["native_file"] = native_file
    try:
        cfg = csoftmax.show_config(mode="dicts")
        info["config"] = _jsonable(cfg)
    except Exception as exc:
        info["config"] = None
        info["config_error"] = f"{type(exc).__name__}: {exc}"
    return info


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def threadpools() -> list:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [
        {
            k: v
            for k, v in pool.items()
            if k in ("user_api", "internal_api", "prefix", "num_threads", "version", "filepath")
        }
        for pool in threadpool_info()
    ]


def system_cpu_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (Linux only)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / hz, sum(fields) / hz


class BackgroundLoad:
    """CPU use by *other* processes while a block runs, as a fraction of the machine's CPUs.

    busy(machine) - CPU time(this process) over the block, divided by the machine's total.
    """

    def __enter__(self):
        import time

        self.sys0, self.self0 = system_cpu_seconds(), time.process_time()
        return self

    def __exit__(self, *exc):
        import time

        sys1, self1 = system_cpu_seconds(), time.process_time()
        self.fraction = None
        if self.sys0 and sys1 and sys1[1] > self.sys0[1]:
            others = (sys1[0] - self.sys0[0]) - (self1 - self.self0)
            self.fraction = max(0.0, others / (sys1[1] - self.sys0[1]))
        return False


def wait_until_idle(
    max_wait: float, threshold: float = 0.1, sample: float = 0.5, log=print
) -> float | None:
    """Sleep until other processes use < threshold of the machine (or max_wait passes).

    Returns the last measured fraction.
    """
    import time

    deadline = time.monotonic() + max_wait
    announced = False
    while True:
        with BackgroundLoad() as load:
            time.sleep(sample)
        if load.fraction is None or load.fraction < threshold or time.monotonic() >= deadline:
            return load.fraction
        if not announced:
            log(f"  waiting for the machine to be idle (others use {load.fraction:.0%} of it) ...")
            announced = True
