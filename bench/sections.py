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

import statistics

from harness import (
    Context,
    SectionResult,
    Workload,
    count,
    event_count,
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


# Later sections (gdb connect time, breakpoint-hit cost, reverse-step latency) go
# here, after these three: the registry prints sections in the order they are defined.
