"""retrograde's benchmarks: `make bench`, or `.venv/bin/python bench/run.py [--only a,b]`.

Every figure is a ratio to a native run of the same program measured in the same
invocation, with the repetitions interleaved and the median taken (see
harness.py), so numbers from different machines or different days compare.
The test programs are compiled from tests/programs/ into a temporary directory,
so this works from a clean checkout. The results are printed as tables, with a
one-line machine summary, and written as JSON to the system temporary directory
(the path is printed last), never into the repository.

Children run with PYTHONDONTWRITEBYTECODE unset and PYTHONPYCACHEPREFIX pointing
into the temporary directory (native runs too, so both sides see the same
environment): retrograde's start-up is then what an installed copy costs, not a
recompilation of its sources on every command. --inherit-env turns that off.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

# Modules whose @section functions make up the benchmark, in printing order.
# A new family of sections (e.g. gdb latencies) can live in its own module: add it here.
SECTION_MODULES = ["sections", "gdb_sections"]

DEFAULT_JSON = Path(tempfile.gettempdir()) / "retrograde-bench" / "results-latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="benchmark retrograde against native runs")
    parser.add_argument("--only", metavar="A,B", help="run only these sections (see --list)")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    parser.add_argument("-n", "--repeat", type=int, default=5,
                        help="interleaved repetitions of each measurement (default 5)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"where to write the results (default {DEFAULT_JSON})")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (programs, traces)")
    parser.add_argument("--inherit-env", action="store_true",
                        help="run children in this environment exactly as it is")
    return parser.parse_args(argv)


def child_env(tmp: Path, inherit: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["RETROGRADE_DIR"] = str(tmp / "traces")  # nothing lands in ~/.local/share
    if not inherit:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for module in SECTION_MODULES:
        importlib.import_module(module)
    sections = harness.SECTIONS
    if args.list:
        for s in sections.values():
            print(f"{s.name:12} {s.title}")
        return 0
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in sections]
        if unknown:
            print(f"run.py: no section {', '.join(unknown)} (sections: {', '.join(sections)})",
                  file=sys.stderr)
            return 2
        selected = [s for s in sections.values() if s.name in wanted]
    else:
        selected = list(sections.values())
    if args.repeat < 1:
        print("run.py: --repeat must be at least 1", file=sys.stderr)
        return 2
    try:
        import retrograde  # noqa: F401
    except ImportError:
        print(f"run.py: {sys.executable} cannot import retrograde: run it with the project's "
              "virtual environment (make bench)", file=sys.stderr)
        return 2

    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {message}", file=sys.stderr, flush=True)

    from sections import WORKLOADS

    tmp = Path(tempfile.mkdtemp(prefix="retrograde-bench-"))
    info = harness.machine_info()
    print(harness.machine_line(info), flush=True)
    load = info.get("load_average", [0.0])[0]
    if load > 0.5:
        print(f"warning: the machine is busy (load average {load:.2f} before starting): "
              "expect noisy numbers; compare the ratios, not the times", flush=True)
    phases = set().union(*(s.needs for s in selected))
    ctx = harness.Context(tmp=tmp, repeat=args.repeat, phases=phases,
                          env=child_env(tmp, args.inherit_env), workloads=WORKLOADS, log=log)
    results: dict[str, object] = {}
    failed = []
    try:
        for s in selected:
            log(f"section {s.name}: {s.title}")
            try:
                result = s.func(ctx)
            except harness.BenchError as error:
                failed.append(s.name)
                results[s.name] = {"error": str(error)}
                print(f"\n== {s.title} ==\n  FAILED: {error}", flush=True)
                continue
            results[s.name] = result.data
            print("\n" + harness.render(result), flush=True)
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    elapsed = time.monotonic() - started
    try:
        load_after = list(os.getloadavg())
    except OSError:
        load_after = None
    report = {
        "machine": info,
        "load_average_after": load_after,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "repeat": args.repeat,
        "inherit_env": args.inherit_env,
        "duration_s": elapsed,
        "sections": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp_json = args.json.with_name(f".{args.json.name}.{os.getpid()}")
    tmp_json.write_text(json.dumps(report, indent=1) + "\n")
    tmp_json.replace(args.json)
    print(f"\n{harness.machine_line(info)}")
    print(f"took {elapsed:.0f} s; results in {args.json}")
    if failed:
        print(f"FAILED sections: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
