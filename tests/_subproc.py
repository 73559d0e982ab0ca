"""Run Python snippets in a fresh interpreter, with a hard timeout that kills
the whole process group (so a hung fork()ed grandchild cannot hang CI)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def package_parent():
    """The directory the in-process csoftmax was imported from (repo root or
    site-packages), so that the child imports the same build."""
    try:
        import csoftmax

        f = getattr(csoftmax, "__file__", None)
        if f:
            return os.path.dirname(os.path.dirname(os.path.abspath(f)))
        path = list(getattr(csoftmax, "__path__", []))
        if path:
            return os.path.dirname(os.path.abspath(path[0]))
    except Exception:
        pass
    return ROOT


def clean_env(**overrides):
    env = {
        k: v
        for k, v in os.environ.items()
        if not (
            k.startswith("CSOFTMAX_")
            or k in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "PYTHONWARNINGS")
        )
    }
    env["PYTHONPATH"] = os.pathsep.join(
        [package_parent(), HERE]
        + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


class Result:
    def __init__(self, rc, out, err, timed_out):
        self.returncode = rc
        self.stdout = out
        self.stderr = err
        self.timed_out = timed_out

    def json(self):
        """The last stdout line that parses as JSON."""
        for line in reversed(self.stdout.strip().splitlines()):
            try:
                return json.loads(line)
            except ValueError:
                continue
        raise AssertionError(f"no JSON in the child's output:\n{self.stdout}\n{self.stderr}")

    def __repr__(self):
        return (
            f"<rc={self.returncode} timed_out={self.timed_out}\nstdout:\n{self.stdout[-3000:]}\n"
            f"stderr:\n{self.stderr[-3000:]}>"
        )


def run_python(code=None, args=(), timeout=120, cwd=None, **env):
    cmd = [sys.executable]
    if code is not None:
        cmd += ["-c", textwrap.dedent(code)]
    cmd += list(args)
    p = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(**env),
        cwd=cwd or HERE,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
        return Result(p.returncode, out, err, False)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        return Result(p.returncode, out, err, True)
