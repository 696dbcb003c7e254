"""The benchmark sections and the workloads they measure.

Adding a section (gdb connect time, breakpoint-hit cost, reverse-step latency, ...):
write a function of the Context here (or in a new module listed in run.py's
SECTION_MODULES), decorate it with @section("name", "title"), and return a
SectionResult. What a section can use:

    ctx.program("compute")         tests/programs/compute.c, built with gcc -O0 -g
    ctx.trace("compute")           a recorded trace of a workload (recorded once, shared)
    ctx.retrograde("replay", ...)  the retrograde CLI's command line
    ctx.env, ctx.repeat, ctx.tmp   children's environment, repetitions, scratch directory
    median_time(argv, n)           the median wall time of a command run n times
    interleave([Step(...), ...])   interleaved repetitions of several commands
    ctx.measure("compute")         the shared native/record/replay runs of a workload

Keep the whole `make bench` under about three minutes: a new section should cost
a few seconds, not a few more rounds of the syscall-heavy workload.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import time
from collections.abc import Iterator

from harness import (
    BenchError,
    Context,
    SectionResult,
    Step,
    Workload,
    count,
    event_count,
    interleave,
    median_time,
    ratio,
    seconds,
    section,
    size,
    timing,
    tree_size,
)

COMPUTE_ITERATIONS = 200_000_000  # the label below says 2e8
SYSCALL_ITERATIONS = 20_000
SYSTEM_PYTHON = "/usr/bin/python3"

WORKLOADS = [
    Workload("compute", "compute 2e8 (CPU-bound)",
             lambda ctx: [str(ctx.program("compute")), str(COMPUTE_ITERATIONS)], status=23),
    Workload("syscall_heavy", f"syscall_heavy {SYSCALL_ITERATIONS} (syscalls)",
             lambda ctx: [str(ctx.program("syscall_heavy")), str(SYSCALL_ITERATIONS)],
             status=24),
    Workload("python_import_json", "python3 -c 'import json'",
             lambda ctx: [SYSTEM_PYTHON, "-c", "import json"], status=0),
]

NET_NOTE = ("net: less retrograde's own start-up (importing its modules: the 'startup' median "
            "measured in the same rounds)")
PER_EVENT_NOTE = ("µs/event: (net time - native time) / events, the cost each event adds "
                  "(meaningless for few events; negative = within the noise)")


@section("record", "record overhead", needs=["record"])
def record_overhead(ctx: Context) -> SectionResult:
    rows, data = [], {}
    for name in ctx.workloads:
        m = ctx.measure(name)
        native, record, startup = (m.timings[p] for p in ("native", "record", "startup"))
        inside = statistics.median(m.recorder_seconds)
        data[name] = {
            "label": m.workload.label,
            "native": native.to_json(), "startup": startup.to_json(), "record": record.to_json(),
            "record_over_native": record.median / native.median,
            "record_net_over_native": m.net("record") / native.median,
            "recorder_seconds_median": inside,
            "recorder_seconds_samples": m.recorder_seconds,
            "events": m.events,
            "events_per_second": m.events / inside,
            "events_per_second_wall": m.events / record.median,
            "record_us_per_event": (m.net("record") - native.median) / m.events * 1e6,
        }
        d = data[name]
        rows.append([m.workload.label, timing(native), timing(startup), timing(record),
                     ratio(d["record_over_native"]), ratio(d["record_net_over_native"]),
                     seconds(inside), count(m.events), count(d["events_per_second"]),
                     f"{d['record_us_per_event']:.0f}"])
    notes = [NET_NOTE, PER_EVENT_NOTE,
             ("in recorder: the trace's end_time - start_time (from spawn to close); "
              "events/s is events over that time"),
             "times: median ±half the min-max range"]
    return SectionResult("record overhead", ["workload", "native", "startup", "record",
                                              "rec/nat", "net rec/nat", "in recorder",
                                              "events", "events/s", "µs/event"],
                         rows, data, notes)


@section("replay", "replay speed (replay -a --no-echo)", needs=["record", "replay"])
def replay_speed(ctx: Context) -> SectionResult:
    rows, data = [], {}
    for name in ctx.workloads:
        m = ctx.measure(name)
        native, record, replay = (m.timings[p] for p in ("native", "record", "replay"))
        data[name] = {
            "label": m.workload.label,
            "replay": replay.to_json(),
            "replay_over_native": replay.median / native.median,
            "replay_net_over_native": m.net("replay") / native.median,
            "replay_over_record": replay.median / record.median,
            "replay_net_over_record_net": m.net("replay") / m.net("record"),
            "events": m.events,
            "replay_us_per_event": (m.net("replay") - native.median) / m.events * 1e6,
        }
        d = data[name]
        rows.append([m.workload.label, timing(native), timing(record), timing(replay),
                     ratio(d["replay_over_native"]), ratio(d["replay_net_over_native"]),
                     ratio(d["replay_over_record"]), f"{d['replay_us_per_event']:.0f}"])
    notes = [NET_NOTE, PER_EVENT_NOTE]
    return SectionResult("replay speed (replay -a --no-echo)",
                         ["workload", "native", "record", "replay", "rep/nat", "net rep/nat",
                          "rep/rec", "µs/event"], rows, data, notes)


@section("size", "trace size")
def trace_size(ctx: Context) -> SectionResult:
    rows, data = [], {}
    for name, w in ctx.workloads.items():
        trace = ctx.trace(name)
        events = event_count(trace)
        total, _ = tree_size(trace)
        files, nfiles = tree_size(trace / "files") if (trace / "files").is_dir() else (0, 0)
        events_bytes = (trace / "events").stat().st_size
        data[name] = {
            "label": w.label, "events": events, "bytes": total,
            "bytes_without_files": total - files, "events_file_bytes": events_bytes,
            "files_bytes": files, "files": nfiles,
            "bytes_per_event": total / events,
            "bytes_per_event_without_files": (total - files) / events,
        }
        d = data[name]
        rows.append([w.label, count(events), size(total), f"{d['bytes_per_event']:,.0f}",
                     size(total - files), f"{d['bytes_per_event_without_files']:.1f}",
                     f"{events_bytes / events:.1f}",
                     f"{nfiles} ({size(files)})"])
    notes = [("w/o files: events + events.index + metadata.json (metadata alone is a few KiB: "
              "env, cpuid); events file: the compressed event chunks only"),
             "files/ holds the copies of mapped files (executable, libraries), once per content"]
    return SectionResult("trace size", ["workload", "events", "trace", "B/event",
                                        "w/o files", "B/event w/o files",
                                        "B/event events file", "files/"],
                         rows, data, notes)


# A CPU loop that gets SIGALRM after about this many passes of the pc it is delivered
# at (cpualarm.c -DHEAVY, 150-250 ns a pass): the CPU-time timer in µs for each.
# The recorder holds the signal 20 ms hoping for a syscall, which adds passes.
PRECISE_TARGETS = [("1e5", 5_000), ("1e6", 200_000)]
PRECISE_ROUNDS = 2  # a replay to 10^6 passes takes about 14 s


@section("precise", "replay to a signal delivered inside a long CPU loop")
def precise_signal(ctx: Context) -> SectionResult:
    program = ctx.program("cpualarm", "-DHEAVY")
    rows, data = [], {}
    for label, usec in PRECISE_TARGETS:
        argv = [str(program), str(usec)]
        trace = ctx.new_trace_dir(f"cpualarm-{label}")
        recorded = subprocess.run(ctx.retrograde("record", "-o", trace, "--", *argv),
                                  env=ctx.env, capture_output=True, text=True, check=False)
        passes = re.search(r"SIGALRM at pass (\d+) of", recorded.stdout)
        if recorded.returncode != 29 or passes is None:
            raise BenchError(f"recording cpualarm {usec}: {recorded.stderr.strip()}")
        arrivals = int(passes[1])
        ctx.log(f"precise: replaying to SIGALRM after {arrivals:,} passes")
        timings = interleave([
            Step("native", lambda i, argv=argv: argv, expect=29),
            Step("replay", lambda i, trace=trace: ctx.retrograde(
                "replay", "-a", "--no-echo", trace), expect=29),
        ], min(ctx.repeat, PRECISE_ROUNDS), env=ctx.env)
        native, replay = timings["native"], timings["replay"]
        per_arrival = replay.median / arrivals * 1e6
        data[label] = {"passes": arrivals, "native": native.to_json(),
                       "replay": replay.to_json(),
                       "replay_over_native": replay.median / native.median,
                       "replay_us_per_pass": per_arrival}
        rows.append([label, count(arrivals), timing(native), timing(replay),
                     ratio(replay.median / native.median), f"{per_arrival:.1f}"])
    notes = [("passes: arrivals at the signal's pc before it in the recording (the native "
              "run, without the recorder's hold, makes fewer)"),
             ("µs/pass: replay time over passes; the replay samples every pass once (the "
              "search, in a clone at the boundary) and takes over that clone's process")]
    return SectionResult("replay to a signal inside a long CPU loop (replay -a --no-echo)",
                         ["target", "passes", "native", "replay", "rep/nat", "µs/pass"],
                         rows, data, notes)


# Thread programs (tests/programs/mt.c): the 4-thread mutex and CPU-bound
# workers, and a condition-variable pair that switches at every hand-over.
THREAD_WORKLOADS = [("mutex", ["mutex"]), ("cpu 4", ["cpu", "4"]), ("condvar", ["condvar"])]
THREAD_REPLAY_TIMEOUT = 60  # seconds; a replay beyond it is reported as such


@section("threads", "record and replay of thread programs (mt.c)")
def thread_programs(ctx: Context) -> SectionResult:
    program = ctx.program("mt", "-pthread")
    rows, data = [], {}
    for label, args in THREAD_WORKLOADS:
        argv = [str(program), *args]
        trace = ctx.new_trace_dir(f"mt-{label.replace(' ', '-')}")
        native = interleave([Step("native", lambda i, argv=argv: argv, expect=0)],
                            ctx.repeat, env=ctx.env)["native"]
        started = time.monotonic()
        recorded = subprocess.run(ctx.retrograde("record", "-o", trace, "--", *argv),
                                  env=ctx.env, capture_output=True, text=True, check=False)
        record_time = time.monotonic() - started
        if recorded.returncode != 0:
            raise BenchError(f"recording mt {label}: {recorded.stderr.strip()}")
        started = time.monotonic()
        try:
            replayed = subprocess.run(ctx.retrograde("replay", "-a", "--no-echo", trace),
                                      env=ctx.env, capture_output=True, text=True,
                                      check=False, timeout=THREAD_REPLAY_TIMEOUT)
            replay_time: float | None = time.monotonic() - started
            outcome = "ok" if replayed.returncode == 0 else \
                (replayed.stderr.strip().splitlines() or ["failed"])[-1][:80]
        except subprocess.TimeoutExpired:
            replay_time, outcome = None, f"not done in {THREAD_REPLAY_TIMEOUT} s"
        events = event_count(trace)
        data[label] = {"native": native.to_json(), "record_s": record_time,
                       "record_over_native": record_time / native.median,
                       "replay_s": replay_time, "events": events, "replay": outcome,
                       "replay_over_native": (replay_time / native.median
                                              if replay_time is not None and outcome == "ok"
                                              else None)}
        d = data[label]
        rows.append([f"mt {label}", timing(native), f"{record_time:.2f} s",
                     ratio(d["record_over_native"]), count(events),
                     f"{replay_time:.2f} s" if replay_time is not None else "-",
                     ratio(d["replay_over_native"]) if d["replay_over_native"] else "-",
                     outcome])
    notes = ["record and replay: one run each; native: the median of the repetitions",
             ("a preempted thread (cpu 4) is reached by execution on a perf breakpoint at "
              "its pc, one sampled arrival per pass of its loop")]
    return SectionResult("record and replay of thread programs (replay -a --no-echo)",
                         ["workload", "native", "record", "rec/nat", "events", "replay",
                          "rep/nat", "replay"], rows, data, notes)


# Later sections (gdb connect time, breakpoint-hit cost, reverse-step latency) go
# here, after these: the registry prints sections in the order they are defined.


TASK_MAKEFILE = (".PHONY: all a b\nall: a b\n\t@cat /dev/null\n"
                 "a:\n\t@echo a > /dev/null\nb:\n\t@echo b > /dev/null\n")


@section("tasks", "recording and replaying threads and processes (against native)",
         needs=["record"])
def record_tasks(ctx: Context) -> SectionResult:
    mt = ctx.program("mt", "-pthread")
    make_dir = ctx.tmp / "tasks-make"
    make_dir.mkdir(exist_ok=True)
    (make_dir / "Makefile").write_text(TASK_MAKEFILE)
    # The CPU-bound workers are preempted in long stretches of user code, which replay
    # does not always reach by execution yet (a divergence): recorded only.
    workloads = [
        ("mutex", "4-thread mutex counter (mt mutex)", [str(mt), "mutex"], True),
        ("cpu", "4-thread CPU-bound (mt cpu 4)", [str(mt), "cpu", "4"], False),
        ("sh", "sh -c 'ls | sort'", ["/bin/sh", "-c", "ls /usr/bin | sort"], True),
        ("make", "make -j2 (tiny Makefile)", ["make", "-s", "-j2", "-C", str(make_dir)], True),
    ]
    rows, data = [], {}
    for name, label, argv, replayed in workloads:
        def recording(i: int, name: str = name, argv: list[str] = argv) -> list[str]:
            return ctx.retrograde("record", "-o", ctx.tmp / f"tasks-{name}-{i}", "--", *argv)

        def replaying(i: int, name: str = name) -> list[str]:  # the trace this round recorded
            return ctx.retrograde("replay", "-a", "--no-echo", ctx.tmp / f"tasks-{name}-{i}")

        steps = [Step("native", lambda i, argv=argv: argv), Step("record", recording)]
        t = interleave(steps + ([Step("replay", replaying)] if replayed else []), ctx.repeat,
                       env=ctx.env)
        over = t["record"].median / t["native"].median
        data[name] = {"label": label, "native": t["native"].to_json(),
                      "record": t["record"].to_json(), "record_over_native": over}
        row = [label, timing(t["native"]), timing(t["record"]), ratio(over), "-", "-"]
        if replayed:
            replay_over = t["replay"].median / t["native"].median
            data[name] |= {"replay": t["replay"].to_json(), "replay_over_native": replay_over}
            row[4:] = [timing(t["replay"]), ratio(replay_over)]
        rows.append(row)
    notes = ["record and replay run one task at a time on one CPU; native uses every core",
             "replay: replay -a --no-echo of the trace recorded in the same round; not for "
             "mt cpu, whose preemptions in long user-code stretches replay does not always "
             "reach by execution yet (issue 10)",
             "times: median ±half the min-max range"]
    return SectionResult("recording and replaying threads and processes",
                         ["workload", "native", "record", "rec/nat", "replay", "rep/nat"],
                         rows, data, notes)


SYSBUF_WORKLOADS = [
    # syscall_heavy makes two calls a round: a read of /dev/zero and a clock_gettime.
    ("loop", "60,000 small syscalls (syscall_heavy 30000)",
     lambda ctx: [str(ctx.program("syscall_heavy")), "30000"], 24),
    ("find", "find /usr/lib -name '*.so'", lambda ctx: ["find", "/usr/lib", "-name", "*.so"], 0),
    ("json", "python3 -c 'import json'", lambda ctx: [SYSTEM_PYTHON, "-c", "import json"], 0),
]


@section("sysbuf", "syscall buffering (record --syscall-buffer), one run each",
         needs=["record", "replay"])
def syscall_buffering(ctx: Context) -> SectionResult:
    rows, data = [], {}
    for name, label, argv_of, status in SYSBUF_WORKLOADS:
        argv = argv_of(ctx)
        native = median_time(argv, 1, env=ctx.env, expect=status).median
        data[name] = {"label": label, "native": native}
        row = [label, seconds(native)]
        for mode in ("--no-syscall-buffer", "--syscall-buffer"):
            out = ctx.tmp / f"sysbuf-{name}{mode}"
            record = median_time(ctx.retrograde("record", mode, "-o", out, "--", *argv), 1,
                                 env=ctx.env, expect=status).median
            replay = median_time(ctx.retrograde("replay", "-a", "--no-echo", out), 1,
                                 env=ctx.env, expect=status).median
            key = "buffered" if mode == "--syscall-buffer" else "traced"
            data[name][key] = {"record": record, "replay": replay,
                               "record_over_native": record / native,
                               "replay_over_native": replay / native,
                               "events": event_count(out)}
            row += [ratio(record / native), ratio(replay / native)]
        rows.append(row)
    notes = ["one run each (wall time, retrograde's start-up included); traced: every call "
             "stops; buffered: the library's calls run without a stop in recording (replay "
             "still stops at each)"]
    return SectionResult("syscall buffering", ["workload", "native", "rec/nat", "rep/nat",
                                               "buf rec/nat", "buf rep/nat"], rows, data, notes)
