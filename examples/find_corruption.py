"""Find the write that corrupted a value, with retrograde's Python client.

Builds and records examples/corrupt.c (or takes a trace you recorded: pass its
directory), goes to the end of the recording, where the damage shows, then
watches the corrupted value and runs backwards: first to the last write to it,
then, with a condition, to the write that first changed it from its good value.
Prints each culprit's function and file:line.

    python examples/find_corruption.py [TRACE]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from retrograde import client

HERE = Path(__file__).resolve().parent
GOOD = 1000  # CALIBRATION in corrupt.c


def record_example(work: Path) -> Path:
    binary, trace = work / "corrupt", work / "corrupt-trace"
    subprocess.run(["gcc", "-g", "-O0", "-o", str(binary), str(HERE / "corrupt.c")], check=True)
    # The program exits 1: it noticed the corruption. The trace is complete all the same.
    subprocess.run([sys.executable, "-m", "retrograde", "record", "-o", str(trace), str(binary)],
                   stdout=subprocess.DEVNULL, check=False)
    return trace


def describe(replay: client.Replay, stop: client.Stop) -> str:
    where = stop.location
    assert where is not None
    return (f"{where.function} at {Path(where.file or '?').name}:{where.line}, "
            f"{stop.value_before} -> {stop.value_after}, "
            f"while storing reading {replay.value('readings_taken')} ({replay.when()})")


def find_corruption(trace: Path) -> int:
    with client.open(trace) as replay:
        end = replay.cont()
        value = replay.value("sensor.calibration")
        print(f"at the end of the recording ({end.reason}): sensor.calibration = {value}"
              f" (expected {GOOD})")
        if value == GOOD:
            return 0

        watch = replay.watch("sensor.calibration")
        stop = replay.reverse_cont()
        if stop.reason != "watchpoint":
            print(f"no write to sensor.calibration found: {stop}")
            return 1
        print(f"last write: {describe(replay, stop)}")

        # Walk further back, stopping only where the good value was overwritten.
        replay.delete(watch)
        replay.watch("sensor.calibration", condition=lambda r: r.stop.value_before == GOOD)
        stop = replay.reverse_cont()
        if stop.reason != "watchpoint":
            print(f"sensor.calibration was never {GOOD}: {stop}")
            return 1
        print(f"first bad write: {describe(replay, stop)}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        return find_corruption(Path(argv[1]))
    with tempfile.TemporaryDirectory(prefix="retrograde-example-") as work:
        return find_corruption(record_example(Path(work)))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except client.ClientError as error:
        print(f"find_corruption: {error}", file=sys.stderr)
        sys.exit(1)
