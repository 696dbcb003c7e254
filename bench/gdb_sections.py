"""gdb sections: connecting and reaching main, the cost of a breakpoint hit, and the
latency of reverse execution, all through real gdb (MI, driven with pygdbmi) against
`retrograde replay -s 0`, with native gdb on the same program as the reference.

The programs are compiled from the C sources below (not from tests/programs), so
their shape (a loop of N calls; one long event interval) is fixed here. Every gdb
command has a timeout, and every server is ended (gdb `kill`, then SIGTERM, then
SIGKILL of its process group) whatever happens.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import (
    CFLAGS,
    BenchError,
    Context,
    SectionResult,
    Timing,
    count,
    ratio,
    run_once,
    seconds,
    section,
    timing,
)

GDB_COMMANDS = Path(__file__).resolve().parent.parent / "retrograde" / "retrograde.gdb"
COMMAND_TIMEOUT = 60.0  # seconds for any one gdb command (connect, continue, ...)

HITS_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
volatile long sink;
__attribute__((noinline)) void tick(long i) { sink += i; }
__attribute__((noinline)) void phase(int n) { sink += n; }
int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 2000;
    phase(1);
    for (long i = 0; i < n; i++)
        tick(i);
    phase(2);
    for (long i = 0; i < n; i++)
        tick(i);
    phase(3);
    printf("hits: %ld\n", sink);
    return 0;
}
"""
HITS = 2000
GDB_ROUNDS = 3  # at most: a replay round costs ~10 s (2000 hits at ~3.5 ms)

# One event interval: no syscall between the strtoull()s and the printf. At -O0 an
# iteration is 19 instructions (gcc 12, x86-64: checked with objdump); the figures
# in instructions below are iterations x that.
LONG_SOURCE = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
volatile uint64_t sink;
__attribute__((noinline)) void near_mark(uint64_t i) { sink = i; }
__attribute__((noinline)) void far_mark(uint64_t i) { sink = i; }
int main(int argc, char **argv)
{
    uint64_t n = strtoull(argv[1], 0, 0), far = strtoull(argv[2], 0, 0);
    uint64_t near = strtoull(argv[3], 0, 0);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (i == far) far_mark(i);
        if (i == near) near_mark(i);
    }
    sink = x; /* END */
    printf("long: %016llx\n", (unsigned long long)x);
    return 0;
}
"""
INSNS_PER_ITERATION = 19
LONG_ITERATIONS = 5_600_000            # ~1.06e8 instructions in the interval
NEAR_BACK = 1_000_000 // INSNS_PER_ITERATION   # iterations before the end: ~1e6 instructions
FAR_BACK = 100_000_000 // INSNS_PER_ITERATION  # ~1e8 instructions
REVERSE_STEPIS = 20
REVERSE_NEXTS = 5
REVERSE_ROLLS = 5
ROLL = 100_000
LOOP_ROLL = 10_000
STEP_TIMEOUT = 30.0  # reverse-stepi/next/roll: a roll single-steps about N instructions


def compile_source(ctx: Context, name: str, source: str) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BenchError("gcc is not installed (apt-get install gcc)")
    out_dir = ctx.tmp / "programs"
    out_dir.mkdir(exist_ok=True)
    src = out_dir / f"{name}.c"
    src.write_text(source.lstrip())
    binary = out_dir / name
    proc = subprocess.run([gcc, *CFLAGS, "-o", str(binary), str(src)],
                          check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"gcc {src.name} failed:\n{proc.stderr}")
    return binary


def record(ctx: Context, label: str, argv: list[str]) -> Path:
    path = ctx.new_trace_dir(label)
    run_once(ctx.retrograde("record", "-o", path, "--", *argv), env=ctx.env, expect=0)
    return path


class CommandTimeout(BenchError):
    pass


class Gdb:
    """gdb --interpreter=mi3, optionally attached to `retrograde replay -s 0 TRACE`.

    `mi(command)` sends an MI or CLI command and reads until its result record and, if
    it resumed the program, the *stopped notification; it returns (seconds from
    sending to the last of those records, records). Timestamps are taken as the
    records arrive (pygdbmi's quiet-period wait is set to 1 ms).
    """

    def __init__(self, ctx: Context, trace: Path | None = None,
                 program: Path | None = None) -> None:
        from pygdbmi.gdbcontroller import GdbController

        self.ctx = ctx
        self.server: subprocess.Popen | None = None
        self.gdb = None
        self.started = time.perf_counter()
        try:
            argv = ["gdb", "--interpreter=mi3", "-q", "-nx"]
            if trace is not None:
                log = open(ctx.tmp / "server-stderr.log", "ab")
                self.server = subprocess.Popen(
                    [*ctx.retrograde("replay", "-s", "0", "--no-echo", trace)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                    env=ctx.env, start_new_session=True)
                log.close()
                address = self._listening()
                argv += ["-x", str(GDB_COMMANDS)]
            self.gdb = GdbController(argv, time_to_check_for_additional_output_sec=0.001)
            self.mi("-gdb-set pagination off")
            self.mi("-gdb-set confirm off")
            if trace is not None:
                self.mi(f"-target-select remote {address}")
            elif program is not None:
                self.mi(f"-file-exec-and-symbols {program}")
        except BaseException:
            self.close()
            raise

    def _listening(self) -> str:
        assert self.server is not None and self.server.stdout is not None
        fd = self.server.stdout.fileno()
        deadline = time.monotonic() + COMMAND_TIMEOUT
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or self.server.poll() is not None:
                raise BenchError("retrograde replay -s 0 did not say where it listens "
                                 f"(see {self.ctx.tmp / 'server-stderr.log'}): {data!r}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    continue
                data += chunk
        match = re.match(rb"listening on ([\d.]+):(\d+)", data)
        if not match:
            raise BenchError(f"unexpected first line from the server: {data!r}")
        return f"{match.group(1).decode()}:{match.group(2).decode()}"

    def mi(self, command: str, timeout: float = COMMAND_TIMEOUT) -> tuple[float, list[dict]]:
        assert self.gdb is not None
        start = time.perf_counter()
        self.gdb.write(command, read_response=False)
        records: list[dict] = []
        deadline = time.monotonic() + timeout
        last = start
        while True:
            new = self.gdb.get_gdb_response(timeout_sec=0.2, raise_error_on_timeout=False)
            if new:
                last = time.perf_counter()
                records += new
            results = [r for r in records if r["type"] == "result"]
            if results:
                if results[-1]["message"] == "error":
                    raise BenchError(f"gdb: {command}: {results[-1]['payload'].get('msg')}")
                if results[-1]["message"] != "running" or any(
                        r["type"] == "notify" and r["message"] == "stopped" for r in records):
                    return last - start, records
            if time.monotonic() > deadline:
                raise CommandTimeout(f"gdb: {command!r} did not finish in {timeout:.0f} s")

    def stop_of(self, records: list[dict]) -> dict:
        stops = [r["payload"] for r in records if r["type"] == "notify"
                 and r["message"] == "stopped"]
        return stops[-1] if stops else {}

    def resume(self, command: str, expect_func: str | None = None,
               timeout: float = COMMAND_TIMEOUT) -> float:
        """A command that resumes; its time; checks where it stopped."""
        elapsed, records = self.mi(command, timeout)
        stop = self.stop_of(records)
        if not stop:
            raise BenchError(f"gdb: {command!r} did not stop")
        func = stop.get("frame", {}).get("func")
        if expect_func is not None and func != expect_func:
            raise BenchError(f"gdb: {command!r} stopped in {func} ({stop.get('reason')}), "
                             f"not in {expect_func}")
        return elapsed

    def breakpoint(self, location: str) -> str:
        _, records = self.mi(f"-break-insert {location}")
        result = [r for r in records if r["type"] == "result"][-1]
        return result["payload"]["bkpt"]["number"]

    def close(self) -> None:
        if self.gdb is not None:
            try:
                if self.gdb.gdb_process and self.gdb.gdb_process.poll() is None:
                    self.gdb.write("kill", timeout_sec=5, raise_error_on_timeout=False)
            except Exception:  # noqa: BLE001 (gdb may be gone or stuck: end it below)
                pass
            try:
                self.gdb.exit()
            except Exception:  # noqa: BLE001
                pass
            self.gdb = None
        if self.server is not None:
            server, self.server = self.server, None
            for sig, wait in ((None, 10), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                if sig is not None:
                    try:
                        os.killpg(server.pid, sig)
                    except ProcessLookupError:
                        pass
                try:
                    server.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            try:  # replay processes left in the server's group, if any
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if server.stdout is not None:
                server.stdout.close()


def ms(t: float) -> str:
    return f"{t * 1000:.2f} ms" if t < 0.01 else seconds(t)


# -- gdb ----------------------------------------------------------------------------------------

@section("gdb", "gdb: connect and reach main, breakpoint-hit cost")
def gdb_section(ctx: Context) -> SectionResult:
    if shutil.which("gdb") is None:
        raise BenchError("gdb is not installed (apt-get install gdb)")
    prog = compile_source(ctx, "hits", HITS_SOURCE)
    argv = [str(prog), str(HITS)]
    trace = record(ctx, "hits", argv)
    native_batch = ["gdb", "-batch", "-nx", "-q", "-ex", "break main", "-ex", "run",
                    "--args", *argv]
    run_once(native_batch, env=ctx.env)  # untimed warm-up (page cache)

    connect = {"native": Timing(), "replay": Timing()}
    hits = {k: {"with": Timing(), "without": Timing()} for k in ("native", "replay")}
    rounds = min(ctx.repeat, GDB_ROUNDS)
    ctx.log(f"gdb: {rounds} rounds of native gdb -batch, replay connect+main, "
            f"and {HITS} breakpoint hits natively and in replay")
    for _ in range(rounds):
        connect["native"].add(*run_once(native_batch, env=ctx.env))
        for kind in ("native", "replay"):
            if kind == "replay":
                g = Gdb(ctx, trace=trace)
            else:
                g = Gdb(ctx, program=prog)
                g.mi(f"-exec-arguments {HITS}")
            try:
                g.breakpoint("main")
                g.resume("-exec-run" if kind == "native" else "-exec-continue", "main")
                if kind == "replay":
                    connect["replay"].add(time.perf_counter() - g.started, 0.0)
                g.breakpoint("phase")
                g.resume("-exec-continue", "phase")                     # phase(1)
                tick = g.breakpoint("tick")
                g.mi(f"-break-after {tick} {HITS}")                     # hit, but never stop
                hits[kind]["with"].add(g.resume("-exec-continue", "phase"), 0.0)
                g.mi(f"-break-delete {tick}")
                hits[kind]["without"].add(g.resume("-exec-continue", "phase"), 0.0)
            finally:
                g.close()

    data: dict[str, Any] = {
        "hits": HITS,
        "connect_native_gdb_batch": connect["native"].to_json(),
        "connect_replay": connect["replay"].to_json(),
        "connect_ratio": connect["replay"].median / connect["native"].median,
    }
    per_hit = {}
    for kind in ("native", "replay"):
        w, wo = hits[kind]["with"], hits[kind]["without"]
        per_hit[kind] = max(w.median - wo.median, 0.0) / HITS
        data[f"continue_{kind}_with_hits"] = w.to_json()
        data[f"continue_{kind}_without_hits"] = wo.to_json()
        data[f"ms_per_hit_{kind}"] = per_hit[kind] * 1000
    data["per_hit_ratio"] = per_hit["replay"] / per_hit["native"] if per_hit["native"] else None
    rows = [
        ["connect, break main, continue to main", timing(connect["native"]),
         timing(connect["replay"]), ratio(data["connect_ratio"])],
        [f"continue over {HITS} hits (ignore count)", timing(hits["native"]["with"]),
         timing(hits["replay"]["with"]), ratio(hits["replay"]["with"].median
                                              / hits["native"]["with"].median)],
        ["same stretch, no breakpoint", timing(hits["native"]["without"]),
         timing(hits["replay"]["without"]), ratio(hits["replay"]["without"].median
                                                 / hits["native"]["without"].median)],
        ["per breakpoint hit", f"{per_hit['native'] * 1000:.3f} ms",
         f"{per_hit['replay'] * 1000:.3f} ms",
         ratio(data["per_hit_ratio"]) if data["per_hit_ratio"] else "-"],
    ]
    notes = [
        "native connect: the whole `gdb -batch -nx -ex 'break main' -ex run PROG` (start to exit);",
        "replay connect: from starting `retrograde replay -s 0` to gdb's *stopped at main "
        "(gdb MI start-up and target remote included)",
        "per hit: (continue with a breakpoint hit N times, ignore count N) - (the same "
        "stretch without it), / N; gdb's ignore count is evaluated in gdb, so each hit is a "
        "stop and a resume",
        "times: median ±half the min-max range",
    ]
    return SectionResult("gdb: connect and reach main, breakpoint-hit cost",
                         ["measure", "native gdb", "replay", "replay/native"], rows, data, notes)


# -- reverse ------------------------------------------------------------------------------------

def _end_line() -> int:
    return next(n for n, text in enumerate(LONG_SOURCE.lstrip().splitlines(), 1)
                if "/* END */" in text)


def _time_reverse_commands(g: Gdb, roll: int, expect_func: str | None, label: str,
                           data: dict[str, Any], rows: list[list[str]], notes: list[str],
                           key_prefix: str = "") -> None:
    """Time reverse-stepi, reverse-next and reverse-roll ``roll`` in ``g`` (REVERSE_*
    repetitions each): a row of median, first and max each; a command over
    STEP_TIMEOUT ends the measuring of this session."""
    for name, command, reps in (
            ("reverse-stepi", "-exec-step-instruction --reverse", REVERSE_STEPIS),
            ("reverse-next", "-exec-next --reverse", REVERSE_NEXTS),
            (f"reverse-roll {roll}", f"reverse-roll {roll}", REVERSE_ROLLS)):
        samples: list[float] = []
        try:
            for _ in range(reps):
                if command.startswith("-exec"):
                    samples.append(g.resume(command, expect_func, timeout=STEP_TIMEOUT))
                else:
                    samples.append(g.mi(command, timeout=STEP_TIMEOUT)[0])
        except CommandTimeout:
            data[key_prefix + name] = {"samples_s": samples, "did_not_finish": True}
            rows.append([f"{name} (x{reps}){label}",
                         f"did not finish in {STEP_TIMEOUT:.0f} s (after {len(samples)} done)",
                         "", ""])
            notes.append(f"{name}{label}: stopped measuring at the first command over "
                         f"{STEP_TIMEOUT:.0f} s; the rest of this session is skipped")
            return
        med = statistics.median(samples)
        data[key_prefix + name] = {"median_s": med, "first_s": samples[0],
                                   "max_s": max(samples), "samples_s": samples}
        rows.append([f"{name} (x{reps}){label}", ms(med), f"first {ms(samples[0])}",
                     f"max {ms(max(samples))}"])


@section("reverse", "reverse execution latency (one long event interval)")
def reverse_section(ctx: Context) -> SectionResult:
    if shutil.which("gdb") is None:
        raise BenchError("gdb is not installed (apt-get install gdb)")
    prog = compile_source(ctx, "long", LONG_SOURCE)
    n = LONG_ITERATIONS
    argv = [str(prog), str(n), str(n - FAR_BACK), str(n - NEAR_BACK)]
    trace = record(ctx, "long", argv)
    end = f"long.c:{_end_line()}"
    data: dict[str, Any] = {
        "instructions_in_interval_approx": n * INSNS_PER_ITERATION,
        "near_back_instructions_approx": NEAR_BACK * INSNS_PER_ITERATION,
        "far_back_instructions_approx": FAR_BACK * INSNS_PER_ITERATION,
        "timeout_s": COMMAND_TIMEOUT,
    }
    rows: list[list[str]] = []
    notes: list[str] = []

    # Session 1: reverse-continue back ~1e6 and ~1e8 instructions, then forwards again.
    ctx.log("reverse: reverse-continue ~1e6 and ~1e8 instructions back")
    g = Gdb(ctx, trace=trace)
    try:
        g.breakpoint(end)
        data["forward_to_end_s"] = g.resume("-exec-continue", "main")
        for label, mark, back in (("1e6", "near_mark", NEAR_BACK), ("1e8", "far_mark", FAR_BACK)):
            insns = back * INSNS_PER_ITERATION
            bp = g.breakpoint(mark)
            try:
                rc = g.resume("-exec-continue --reverse", mark)
            except CommandTimeout:
                data[f"reverse_continue_{label}"] = "did not finish"
                rows.append([f"reverse-continue ~{count(insns)} insns back",
                             f"did not finish in {COMMAND_TIMEOUT:.0f} s", "", ""])
                break
            g.mi(f"-break-delete {bp}")
            fwd = g.resume("-exec-continue", "main")
            data[f"reverse_continue_{label}_s"] = rc
            data[f"forward_over_{label}_s"] = fwd
            data[f"reverse_continue_{label}_over_forward"] = rc / fwd
            rows.append([f"reverse-continue ~{count(insns)} insns back", ms(rc), ms(fwd),
                         ratio(rc / fwd)])
    finally:
        g.close()

    # Session 2, fresh (as after `continue` to a breakpoint): reverse-stepi, -next, -roll.
    ctx.log(f"reverse: {REVERSE_STEPIS} reverse-stepi, {REVERSE_NEXTS} reverse-next, "
            f"{REVERSE_ROLLS} reverse-roll {ROLL} from the end of the interval")
    g = Gdb(ctx, trace=trace)
    try:
        g.breakpoint(end)
        g.resume("-exec-continue", "main")
        g.mi("-break-delete")
        _time_reverse_commands(g, ROLL, "main", "", data, rows, notes)
    finally:
        g.close()

    # Session 3: the same commands where debugging usually happens, at a breakpoint hit
    # many times in a loop (the 1000th call of tick()): the instructions to count back
    # start at the previous hit, however long the program has run.
    ctx.log("reverse: the same commands at the 1000th hit of a breakpoint in a loop")
    hits_trace = record(ctx, "hits-reverse",
                        [str(compile_source(ctx, "hits", HITS_SOURCE)), str(HITS)])
    g = Gdb(ctx, trace=hits_trace)
    try:
        bp = g.breakpoint("tick")
        g.mi(f"-break-after {bp} 999")
        g.resume("-exec-continue", "tick")
        g.mi("-break-delete")
        _time_reverse_commands(g, LOOP_ROLL, None, ", 1000th hit in a loop", data, rows,
                               notes, key_prefix="loop ")
    finally:
        g.close()

    notes[:0] = [
        f"program: a {count(n)}-iteration xorshift loop at -O0, {INSNS_PER_ITERATION} "
        f"instructions an iteration, ~{count(n * INSNS_PER_ITERATION)} instructions in one "
        "event interval; stopped at the line after the loop",
        "reverse-continue rows: reverse time, then forward `continue` over the same stretch, "
        "then reverse/forward",
        "reverse-stepi/next/roll rows: median, first, max of the repetitions, in a fresh "
        "session stopped by a breakpoint at the end of the interval (the first pays for "
        "closing in on it: native slices to a waypoint clone, then the previous instruction's "
        "arrivals counted on perf counters); reverse-roll N single-steps about N instructions",
        f"every command has a timeout: {STEP_TIMEOUT:.0f} s for reverse-stepi/next/roll, "
        f"{COMMAND_TIMEOUT:.0f} s for the others",
    ]
    return SectionResult("reverse execution latency (one long event interval)",
                         ["measure", "time", "", ""], rows, data, notes)


# -- reverse search -----------------------------------------------------------------------------

WALK_SOURCE = r"""
#include <stdio.h>
volatile long g_last = -1;
int main(void)
{
    long sum = 0;
    printf("walk\n");
    fflush(stdout);
    for (long i = 0; i < 100000; i++) {
        sum += i * 7;
        if (i % 100 == 0)
            g_last = i;
    }
    printf("walk: %ld %ld\n", g_last, sum); /* END */
    return 0;
}
"""
WALK_WRITES = 1000
WALK_TIMEOUT = 300.0
# gdb's own loop: one MI round trip a hop would be most of what is measured.
WALK_SCRIPT = """
stops = []
gdb.events.stop.connect(stops.append)
while not stops or isinstance(stops[-1], gdb.BreakpointEvent):
    gdb.execute("reverse-continue")
print("walked %d" % (len(stops) - 1))
"""


CONDITION_I = 31300


def _walk_line(marker: str) -> int:
    """The line of WALK_SOURCE (as compiled: leading blank line stripped) with ``marker``."""
    lines = WALK_SOURCE.lstrip().splitlines()
    return next(i for i, text in enumerate(lines, 1) if marker in text)


def _found_at(g: Gdb, command: str) -> float:
    """``command``'s time; checks that it stopped where the condition holds."""
    took = g.resume(command, "main", timeout=WALK_TIMEOUT)
    _, records = g.mi("-data-evaluate-expression i")
    value = [r for r in records if r["type"] == "result"][-1]["payload"]["value"]
    if value != str(CONDITION_I):
        raise BenchError(f"gdb: {command!r} stopped at i == {value}, not {CONDITION_I}")
    return took


def _walk_history(g: Gdb) -> tuple[float, int]:
    """Run WALK_SCRIPT in gdb; (seconds, writes it stopped at)."""
    assert g.gdb is not None
    script = f"python exec({WALK_SCRIPT!r})".replace("\\", "\\\\").replace('"', '\\"')
    start = time.perf_counter()
    g.gdb.write(f'-interpreter-exec console "{script}"', read_response=False)
    deadline = time.monotonic() + WALK_TIMEOUT
    while time.monotonic() < deadline:
        for r in g.gdb.get_gdb_response(timeout_sec=0.05, raise_error_on_timeout=False):
            if r["type"] == "result" and r["message"] == "error":
                raise BenchError(f"gdb: the walk failed: {r['payload']}")
            found = re.match(r"walked (\d+)", r["payload"] or "") \
                if r["type"] == "console" and isinstance(r["payload"], str) else None
            if found:
                return time.perf_counter() - start, int(found[1])
    raise CommandTimeout(f"the walk did not finish in {WALK_TIMEOUT:.0f} s")


@section("search", "reverse search: watchpoint hops and a value's whole history")
def search_section(ctx: Context) -> SectionResult:
    if shutil.which("gdb") is None:
        raise BenchError("gdb is not installed (apt-get install gdb)")
    prog = compile_source(ctx, "long", LONG_SOURCE)
    end = f"long.c:{_end_line()}"
    rows: list[list[str]] = []
    data: dict[str, Any] = {}
    for label, insns in (("1e6", 1_000_000), ("1e8", 100_000_000)):
        n = insns // INSNS_PER_ITERATION
        # far_mark writes sink in the loop's 2nd iteration; near_mark never runs.
        trace = record(ctx, f"search-{label}", [str(prog), str(n), "1", str(n + 1)])
        ctx.log(f"search: a reverse watchpoint hop over ~{label} instructions")
        hops, forwards = Timing(), Timing()
        for _ in range(min(ctx.repeat, 3)):
            g = Gdb(ctx, trace=trace)
            try:
                g.breakpoint(end)
                g.resume("-exec-continue", "main")
                _, records = g.mi("-break-watch sink")
                result = [r for r in records if r["type"] == "result"][-1]
                watch = result["payload"]["wpt"]["number"]
                hops.add(g.resume("-exec-continue --reverse", "far_mark"), 0.0)
                g.mi(f"-break-delete {watch}")
                forwards.add(g.resume("-exec-continue", "main"), 0.0)  # to the end again
            finally:
                g.close()
        data[f"watch_hop_{label}"] = hops.to_json()
        data[f"forward_{label}"] = forwards.to_json()
        data[f"watch_hop_{label}_over_forward"] = hops.median / forwards.median
        rows.append([f"reverse watchpoint hop, ~{label} insns", timing(hops), timing(forwards),
                     ratio(hops.median / forwards.median)])

    walk_prog = compile_source(ctx, "walk", WALK_SOURCE)
    trace = record(ctx, "search-walk", [str(walk_prog)])
    ctx.log(f"search: the whole history of a global, {WALK_WRITES} writes, walked backwards")
    g = Gdb(ctx, trace=trace)
    try:
        g.breakpoint(f"walk.c:{_walk_line('/* END */')}")
        g.resume("-exec-continue", "main")
        g.mi("-break-delete")
        g.mi("-break-watch g_last")
        took, walked = _walk_history(g)
    finally:
        g.close()
    if walked != WALK_WRITES:
        raise BenchError(f"the walk stopped at {walked} writes, not {WALK_WRITES}")
    data["walk_writes"] = walked
    data["walk_s"] = took
    rows.append([f"history walk: {walked} reverse-continues on a watchpoint", seconds(took),
                 f"{took / walked * 1000:.1f} ms a hop", ""])

    ctx.log(f"search: `break LINE if i == {CONDITION_I}` in the same loop, found forwards "
            "and backwards, against a forward run over the loop")
    body = f"walk.c:{_walk_line('sum += i * 7;')}"
    found, forward = {"forward": Timing(), "backward": Timing()}, Timing()
    for _ in range(min(ctx.repeat, 3)):
        g = Gdb(ctx, trace=trace)
        try:
            g.mi("-gdb-set breakpoint condition-evaluation target")
            g.breakpoint("-t main")
            g.resume("-exec-continue", "main")
            end = g.breakpoint(f"walk.c:{_walk_line('/* END */')}")
            forward.add(g.resume("-exec-continue", "main"), 0.0)  # the loop, no condition
            g.mi(f"-break-delete {end}")
            g.mi("-break-insert -c \"i == %d\" %s" % (CONDITION_I, body))
            found["backward"].add(_found_at(g, "-exec-continue --reverse"), 0.0)
            g.mi("-break-delete")
            g.breakpoint("-t main")
            g.resume("-exec-continue --reverse", "main")  # back before the loop
            g.mi("-break-insert -c \"i == %d\" %s" % (CONDITION_I, body))
            found["forward"].add(_found_at(g, "-exec-continue"), 0.0)
        finally:
            g.close()
    data["loop_forward"] = forward.to_json()
    for way, timing_of in found.items():
        data[f"condition_{way}"] = timing_of.to_json()
        data[f"condition_{way}_over_forward"] = timing_of.median / forward.median
        rows.append([f"`break if i == {CONDITION_I}` found {way}s", timing(timing_of),
                     timing(forward), ratio(timing_of.median / forward.median)])
    notes = [
        "condition: the walk's loop with `set breakpoint condition-evaluation target` "
        f"(the server evaluates gdb's agent expression), `break` on its body `if i == "
        f"{CONDITION_I}`, found backwards from the line after the loop and forwards from "
        "main; forward: `continue` over the whole loop from main with no "
        "condition",
        "hop: from the end of one event interval (long.c, stopped at the line after the loop), "
        "`watch sink` and reverse-continue back to its only write, in the loop's 2nd "
        "iteration; forward: delete the watchpoint and continue from there to the end again "
        "(the same stretch); goal: hop/forward at most 2",
        f"walk: {WALK_WRITES} writes of a global in a 10^5-iteration loop with no syscall, "
        "walked with reverse-continue by a loop in gdb's Python until history runs out; "
        "goal: under 10 s",
    ]
    return SectionResult("reverse search: watchpoint hops and a value's whole history",
                         ["measure", "reverse", "forward", "reverse/forward"], rows, data, notes)


# -- reverse execution across threads -----------------------------------------------------------

# main and three workers that take one mutex and yield every 500 rounds (the
# recorder switches threads at sched_yield and at a futex wait, so the workers'
# slices interleave), calling milestone() every 2000 rounds; each worker calls
# finish() at its end.
THREADS_SOURCE = r"""
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
volatile long counter;
__attribute__((noinline)) void milestone(long id, long i) { counter += id * 0 + i * 0; }
__attribute__((noinline)) void finish(long id) { counter += id * 0; }
static void *work(void *arg)
{
    long id = (long)arg;
    for (long i = 0; i < 10000; i++) {
        pthread_mutex_lock(&lock);
        counter++;
        pthread_mutex_unlock(&lock);
        if (i % 500 == 0)
            sched_yield();
        if (i % 2000 == 0)
            milestone(id, i);
    }
    finish(id);
    return NULL;
}
int main(void)
{
    pthread_t threads[3];
    for (long i = 0; i < 3; i++)
        pthread_create(&threads[i], NULL, work, (void *)(i + 1));
    for (int i = 0; i < 3; i++)
        pthread_join(threads[i], NULL);
    printf("threads: %ld\n", counter);
    return 0;
}
"""
THREAD_REVERSE_CONTINUES = 5


@section("threads-reverse", "reverse execution latency in a 4-thread program")
def threads_reverse_section(ctx: Context) -> SectionResult:
    if shutil.which("gdb") is None:
        raise BenchError("gdb is not installed (apt-get install gdb)")
    prog = compile_source(ctx, "mt4", THREADS_SOURCE)
    trace = record(ctx, "mt4", [str(prog)])
    data: dict[str, Any] = {"timeout_s": COMMAND_TIMEOUT}
    rows: list[list[str]] = []
    notes: list[str] = []

    # Session 1: at the first worker's finish(), reverse-stepi, reverse-next and
    # reverse-roll in that worker (its previous instructions lie before the other
    # workers' slices once it has been switched out).
    ctx.log("threads-reverse: reverse-stepi/next/roll in a worker at its finish()")
    g = Gdb(ctx, trace=trace)
    try:
        g.breakpoint("finish")
        data["forward_to_finish_s"] = g.resume("-exec-continue", "finish")
        g.mi("-break-delete")
        _time_reverse_commands(g, 1000, None, ", a worker at finish()", data, rows, notes,
                               key_prefix="threads ")
    finally:
        g.close()

    # Session 2: reverse-continue from the last finish() to the milestones before it,
    # hit in whichever worker called it last; forward continue over the same stretch.
    ctx.log(f"threads-reverse: {THREAD_REVERSE_CONTINUES} reverse-continues to milestone()")
    g = Gdb(ctx, trace=trace)
    try:
        bp = g.breakpoint("finish")
        g.mi(f"-break-after {bp} 2")
        g.resume("-exec-continue", "finish")
        g.mi("-break-delete")
        g.breakpoint("milestone")
        samples: list[float] = []
        threads: set[str] = set()
        for _ in range(THREAD_REVERSE_CONTINUES):
            elapsed, records = g.mi("-exec-continue --reverse", COMMAND_TIMEOUT)
            stop = g.stop_of(records)
            if stop.get("frame", {}).get("func") != "milestone":
                raise BenchError(f"reverse-continue stopped at {stop}, not in milestone")
            threads.add(stop.get("thread-id", "?"))
            samples.append(elapsed)
        forward = [g.resume("-exec-continue", "milestone")
                   for _ in range(THREAD_REVERSE_CONTINUES - 1)]
    finally:
        g.close()
    med, fwd = statistics.median(samples), statistics.median(forward)
    data["reverse_continue_to_milestone"] = {"median_s": med, "first_s": samples[0],
                                             "max_s": max(samples), "samples_s": samples,
                                             "threads_hit": len(threads)}
    data["forward_continue_to_milestone_median_s"] = fwd
    data["reverse_continue_over_forward"] = med / fwd
    rows.append([f"reverse-continue to milestone() (x{THREAD_REVERSE_CONTINUES}), "
                 f"{len(threads)} threads hit", ms(med), f"forward {ms(fwd)}", ratio(med / fwd)])
    notes[:0] = [
        "program: main and 3 workers taking one mutex, 10000 rounds each, yielding every "
        "500 (the recorded slices interleave), milestone() every 2000 rounds, finish() at "
        "the end",
        "reverse-stepi/next/roll rows: median, first, max, at the first worker's finish(), "
        "stepping that worker (scheduler-locking step, from the shipped command file)",
        "reverse-continue row: median of the reverse-continues from the last finish() to "
        "the milestones before it; forward: median continue between the same milestones; "
        "a trace of threads searches by stopping at every hit (a perf counter counts in one "
        "thread)",
    ]
    return SectionResult("reverse execution latency in a 4-thread program",
                         ["measure", "time", "", ""], rows, data, notes)
