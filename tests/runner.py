"""Running programs natively, under `retrograde record`, and under `retrograde replay`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from retrograde.trace.events import ExitEvent
from retrograde.trace.format import TraceReader

RETROGRADE = [sys.executable, "-m", "retrograde"]

# Real programs of this machine, recorded and replayed with unchanged output.
REAL_PROGRAMS = [
    ["ls", "-l", "/usr/bin"],
    ["/usr/bin/python3", "-c", "import json, re, collections; print(json.dumps({'a': [1, 2]}))"],
    ["sort", "-r", "/etc/services"],
    ["gzip", "-c", "/etc/services"],
    ["sqlite3", ":memory:", "create table t(x); insert into t values (1),(2),(40); "
                            "select sum(x), count(*) from t;"],
]


def run(argv: list[str], *, cwd: Path | None = None, timeout: float = 60,
        input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, capture_output=True, timeout=timeout, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)


def native(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return run([str(a) for a in argv], **kw)


def record(argv: list[str], *, out: Path | None = None, strict: bool = False,
           **kw) -> subprocess.CompletedProcess:
    extra = (["-o", str(out)] if out else []) + (["--strict"] if strict else [])
    return run(RETROGRADE + ["record", *extra, "--", *[str(a) for a in argv]], **kw)


def recorded(program: Path, trace_root: Path, *args: str) -> Path:
    """``program args`` recorded into TRACE_ROOT/NAME; fails the test unless the
    recording ran to the program's own end (a closed trace whose last event is its exit)."""
    out = trace_root / program.name
    got = record([program, *args], out=out)
    with TraceReader(out) as trace:
        assert trace.complete and isinstance(trace[len(trace) - 1], ExitEvent), got.stderr
    return out


def replay(trace: Path | None = None, *options: str, **kw) -> subprocess.CompletedProcess:
    return run(RETROGRADE + ["replay", "-a", *options, *([str(trace)] if trace else [])], **kw)


def retrograde(*args: str, **kw) -> subprocess.CompletedProcess:
    return run(RETROGRADE + [str(a) for a in args], **kw)


def latest(root: Path) -> Path:
    return (root / "latest-trace").resolve()


def descendants_alive(marker: str) -> list[str]:
    """Processes whose command line or name mentions ``marker`` (leftover tracees).

    A replay process is named "retrograde-stub" (the emulated execve's stub).
    """
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                with open(f"/proc/{pid}/comm") as f:
                    cmd += " " + f.read().strip()
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue  # dead; only nobody has reaped it (PID 1 here may not)
            except OSError:
                continue
            if marker in cmd:
                found.append(f"{pid}: {cmd}")
    return found


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
