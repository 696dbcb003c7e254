"""The benchmark harness: timing, test programs, the section registry, tables, machine info.

Nothing here knows what a section measures. A section is a function of a
`Context` that returns a `SectionResult` (a table for people, a dict for the
JSON file), registered with the `@section` decorator; see sections.py.

Timing rules (these machines are noisy):
- every sample is the wall time of one whole command, from fork to exit;
- samples of the things being compared are interleaved (native, record,
  replay, native, record, replay, ...) so that a slow minute hits all of them;
- the reported figure is the median of the samples; the spread (max-min over
  median) says how much to trust it.
"""

from __future__ import annotations

import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROGRAMS_DIR = REPO / "tests" / "programs"
CFLAGS = ["-g", "-O0", "-fno-omit-frame-pointer"]


class BenchError(Exception):
    """A benchmark that cannot give a meaningful number (a command failed, a tool is missing)."""


# -- timing -----------------------------------------------------------------------------

@dataclass
class Timing:
    """The samples of one measured thing: wall seconds, and CPU seconds (user+sys of children)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, wall: float, cpu: float) -> None:
        self.wall.append(wall)
        self.cpu.append(cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.05 means the samples lie within 5% of the median's size."""
        return (max(self.wall) - min(self.wall)) / self.median if self.median else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"median_s": self.median, "cpu_median_s": self.cpu_median,
                "spread": self.spread, "samples_s": self.wall}


def run_once(argv: Sequence[str | os.PathLike[str]], *, env: dict[str, str] | None = None,
             cwd: Path | None = None, expect: int | None = 0) -> tuple[float, float]:
    """Run a command to its end, output discarded; (wall seconds, CPU seconds).

    `expect` is the exit status the command must end with (None: any); anything
    else is a BenchError carrying the end of its stderr, since the time of a
    failed run means nothing.
    """
    argv = [os.fspath(a) for a in argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, check=False, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if expect is not None and proc.returncode != expect:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise BenchError(f"{' '.join(argv)}: exit status {proc.returncode}, expected {expect}"
                         + "".join(f"\n    {line}" for line in tail))
    return wall, cpu


def median_time(argv: Sequence[str | os.PathLike[str]], n: int = 3, **kwargs: Any) -> Timing:
    """Run one command n times (keyword arguments as for run_once); its Timing (.median)."""
    timing = Timing()
    for _ in range(n):
        timing.add(*run_once(argv, **kwargs))
    return timing


@dataclass
class Step:
    """One command of an interleaved round.

    argv(i) gives the command line of repetition i (so that repetition i can write
    to, or read from, a directory of its own); after(i) runs once it has ended,
    outside the timed region.
    """

    name: str
    argv: Callable[[int], Sequence[str | os.PathLike[str]]]
    expect: int | None = 0
    after: Callable[[int], None] | None = None


def interleave(steps: Sequence[Step], n: int, *, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> dict[str, Timing]:
    """Run the steps in order, n rounds; the Timing of each step by name."""
    timings = {step.name: Timing() for step in steps}
    for i in range(n):
        for step in steps:
            timings[step.name].add(*run_once(step.argv(i), env=env, cwd=cwd, expect=step.expect))
            if step.after is not None:
                step.after(i)
    return timings


# -- sections ---------------------------------------------------------------------------

@dataclass
class SectionResult:
    """What a section reports: a table (rows of already formatted cells) and JSON data."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass
class Section:
    name: str
    title: str
    func: Callable[[Context], SectionResult]
    needs: frozenset[str]


SECTIONS: dict[str, Section] = {}


def section(name: str, title: str, *, needs: Iterable[str] = ()) -> Callable:
    """Register a section, in the order of registration (the order `run.py` prints them).

    `needs` names the phases of `Context.measure()` the section reads: "record"
    (always measured) or "replay" (measured only if a selected section needs it).
    """
    def register(func: Callable[[Context], SectionResult]) -> Callable[[Context], SectionResult]:
        if name in SECTIONS:
            raise ValueError(f"benchmark section {name!r} registered twice")
        SECTIONS[name] = Section(name, title, func, frozenset(needs))
        return func
    return register


# -- workloads and their measurement ----------------------------------------------------

@dataclass
class Workload:
    """A program to benchmark: argv(ctx) gives its command line; status is its exit status."""

    name: str
    label: str
    argv: Callable[[Context], list[str]]
    status: int


@dataclass
class Measurement:
    """Interleaved runs of one workload: native, retrograde's startup, record [, replay]."""

    workload: Workload
    timings: dict[str, Timing]
    recorder_seconds: list[float]     # per record run: metadata end_time - start_time
    events: int
    trace: Path                       # the trace of the last record run (the others are deleted)

    def net(self, phase: str) -> float:
        """The median time of a retrograde phase less the median startup (import) time."""
        return max(self.timings[phase].median - self.timings["startup"].median, 1e-9)


class Context:
    """What sections share: the options, a private temporary directory, compiled programs,
    retrograde command lines, and the (cached) measurement of each workload."""

    def __init__(self, *, tmp: Path, repeat: int, phases: set[str], env: dict[str, str],
                 workloads: Sequence[Workload], log: Callable[[str], None]) -> None:
        self.tmp = tmp
        self.repeat = repeat
        self.phases = phases
        self.env = env
        self.workloads = {w.name: w for w in workloads}
        self.log = log
        self.python = sys.executable
        self._programs: dict[str, Path] = {}
        self._measurements: dict[str, Measurement] = {}
        self._traces: dict[str, Path] = {}

    # programs

    def program(self, name: str, *extra_flags: str) -> Path:
        """tests/programs/NAME.c compiled with gcc -O0 -g into the temporary directory."""
        key = " ".join((name, *extra_flags))
        if key not in self._programs:
            gcc = shutil.which("gcc")
            if gcc is None:
                raise BenchError("gcc is not installed (apt-get install gcc)")
            source = PROGRAMS_DIR / f"{name}.c"
            out_dir = self.tmp / "programs"
            out_dir.mkdir(exist_ok=True)
            binary = out_dir / (name if not extra_flags else f"{name}-{len(self._programs)}")
            proc = subprocess.run([gcc, *CFLAGS, *extra_flags, "-o", str(binary), str(source)],
                                  check=False, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BenchError(f"gcc {source.name} failed:\n{proc.stderr}")
            self._programs[key] = binary
        return self._programs[key]

    # retrograde

    def retrograde(self, *args: str | os.PathLike[str]) -> list[str]:
        """The command line of the retrograde CLI with these arguments."""
        return [self.python, "-m", "retrograde", *map(os.fspath, args)]

    def startup_argv(self) -> list[str]:
        """A command that only imports what `record` and `replay` import: their fixed cost."""
        return [self.python, "-c",
                "import retrograde.cli, retrograde.trace.recorder, retrograde.replay.session"]

    def new_trace_dir(self, label: str) -> Path:
        """A path for a trace (not created: `record -o` wants it absent or empty)."""
        root = self.tmp / "traces"
        root.mkdir(exist_ok=True)
        n = 0
        while (root / f"{label}-{n}").exists():
            n += 1
        return root / f"{label}-{n}"

    def trace(self, workload: str) -> Path:
        """A recorded trace of a workload: the measured one if there is one, else a new one."""
        if workload in self._measurements:
            return self._measurements[workload].trace
        if workload not in self._traces:
            w = self.workloads[workload]
            path = self.new_trace_dir(w.name)
            run_once(self.retrograde("record", "-o", path, "--", *w.argv(self)),
                     env=self.env, expect=w.status)
            self._traces[workload] = path
        return self._traces[workload]

    def measure(self, workload: str) -> Measurement:
        """Interleaved native / startup / record [/ replay] runs of a workload (done once)."""
        if workload in self._measurements:
            return self._measurements[workload]
        w = self.workloads[workload]
        argv = w.argv(self)
        replay = "replay" in self.phases
        self.log(f"measuring {w.label}: {self.repeat} rounds of native, startup, record"
                 + (", replay" if replay else ""))
        # One untimed round of the cheap commands: page cache, bytecode cache.
        run_once(argv, env=self.env, expect=w.status)
        run_once(self.startup_argv(), env=self.env)
        traces = [self.new_trace_dir(w.name) for _ in range(self.repeat)]
        recorder_seconds: list[float] = []

        def recorded(i: int) -> None:
            meta = read_metadata(traces[i])
            recorder_seconds.append(meta["end_time"] - meta["start_time"])

        def done_with(i: int) -> None:
            if i + 1 < self.repeat:  # keep the last trace for the sections that read it
                shutil.rmtree(traces[i], ignore_errors=True)

        steps = [
            Step("native", lambda i: argv, expect=w.status),
            Step("startup", lambda i: self.startup_argv()),
            Step("record", lambda i: self.retrograde("record", "-o", traces[i], "--", *argv),
                 expect=w.status, after=recorded if replay else _chain(recorded, done_with)),
        ]
        if replay:
            steps.append(Step("replay",
                              lambda i: self.retrograde("replay", "-a", "--no-echo", traces[i]),
                              expect=w.status, after=done_with))
        timings = interleave(steps, self.repeat, env=self.env)
        m = Measurement(w, timings, recorder_seconds, event_count(traces[-1]), traces[-1])
        self._measurements[workload] = m
        return m


def _chain(*funcs: Callable[[int], None]) -> Callable[[int], None]:
    def run(i: int) -> None:
        for f in funcs:
            f(i)
    return run


# -- traces -----------------------------------------------------------------------------

def read_metadata(trace: Path) -> dict[str, Any]:
    import json
    with open(trace / "metadata.json") as f:
        return json.load(f)


def event_count(trace: Path) -> int:
    """The number of events, read through the trace reader (which checks it against the metadata)."""
    from retrograde.trace.format import TraceReader
    with TraceReader(trace) as reader:
        if not reader.complete:
            raise BenchError(f"trace {trace} is incomplete")
        return len(reader)


def tree_size(path: Path) -> tuple[int, int]:
    """(total bytes of the regular files under path, how many there are)."""
    total = count = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(root, name))
            total += st.st_size
            count += 1
    return total, count


# -- machine ----------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    uname = os.uname()
    info: dict[str, Any] = {
        "kernel": f"{uname.sysname} {uname.release} {uname.machine}",
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0)),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
    }
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    try:
        info["perf_counters"] = Path("/sys/bus/event_source/devices/cpu").exists()
        git = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                             check=False, capture_output=True, text=True)
        if git.returncode == 0:
            info["commit"] = git.stdout.strip()
    except OSError:
        pass
    return info


def machine_line(info: dict[str, Any]) -> str:
    parts = [info["kernel"], f"{info['cpu']} ({info['cpus']} CPUs)", info["python"]]
    if "commit" in info:
        parts.append(f"retrograde {info['commit']}")
    return "machine: " + " | ".join(parts)


# -- formatting -------------------------------------------------------------------------

def seconds(t: float) -> str:
    if t >= 10:
        return f"{t:.1f} s"
    if t >= 1:
        return f"{t:.2f} s"
    return f"{t * 1000:.0f} ms" if t >= 0.01 else f"{t * 1000:.1f} ms"


def timing(t: Timing) -> str:
    return f"{seconds(t.median)} ±{t.spread * 50:.0f}%"


def ratio(x: float) -> str:
    return f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"


def count(n: float) -> str:
    return f"{n:,.0f}"


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def render(result: SectionResult) -> str:
    for row in result.rows:
        if len(row) != len(result.headers):
            raise ValueError(f"{result.title}: a row has {len(row)} cells for "
                             f"{len(result.headers)} headers: {row}")
    widths = [max(len(row[i]) for row in (result.headers, *result.rows))
              for i in range(len(result.headers))]

    def line(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    out = [f"== {result.title} ==", line(result.headers),
           "  ".join("-" * w for w in widths)]
    out += [line(row) for row in result.rows]
    out += [f"  {note}" for note in result.notes]
    return "\n".join(out)
