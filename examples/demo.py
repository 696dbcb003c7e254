"""`make demo`: record the bundled buggy program, show its trace, replay it.

The program (examples/buggy.c) corrupts a heap field through an off-by-N copy
and notices only later. Recording captures the run once; the replay then
reproduces it exactly, with the recorded binary deleted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RETROGRADE = [sys.executable, "-m", "retrograde"]


def step(title: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
    print(f"\n\033[1m$ {' '.join(argv)}\033[0m   # {title}", flush=True)
    return subprocess.run(argv, **kw)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="retrograde-demo-"))
    os.environ["RETROGRADE_DIR"] = str(work / "traces")
    binary = work / "buggy"
    subprocess.run(["gcc", "-g", "-O0", "-o", str(binary), str(HERE / "buggy.c")], check=True)
    recorded = step("record the buggy program", [*RETROGRADE, "record", str(binary)])
    step("list traces", [*RETROGRADE, "ls"])
    step("the last events of the trace", [*RETROGRADE, "dump", "latest-trace", "-8"])
    binary.unlink()
    print("\n(the binary is deleted now: replay needs nothing but the trace)")
    replayed = step("replay it, no debugger", [*RETROGRADE, "replay", "-a"])
    same = replayed.returncode == recorded.returncode
    print(f"\nrecorded exit status {recorded.returncode}, replayed {replayed.returncode}: "
          f"{'identical' if same else 'DIFFERENT'}")
    detect = line_of("printf(\"audit:")
    session = step("debug it: stop where the bug is noticed, watch the corrupted balance, "
                   "and run backwards to the write that corrupted it",
                   [*RETROGRADE, "replay", "--no-echo", "--", "-batch",
                    "-ex", f"break {detect}", "-ex", "continue",
                    "-ex", "print acct->balance", "-ex", "watch -l acct->balance",
                    "-ex", "reverse-continue", "-ex", "backtrace", "-ex", "print i",
                    "-ex", "reverse-continue", "-ex", "print i"],
                   capture_output=True, text=True)
    shown = [line for line in session.stdout.splitlines()
             if not line.startswith(("Reading ", "warning: ", "0x0000"))]
    print("\n".join(shown))
    found = f"buggy.c:{line_of('dst[i] = src[i];')}" in session.stdout
    print(f"\nreverse-continue landed on the corrupting line: {'yes' if found else 'NO'}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if same and found and session.returncode == 0 else 1


def line_of(marker: str) -> int:
    lines = (HERE / "buggy.c").read_text().splitlines()
    return next(n for n, text in enumerate(lines, 1) if marker in text)


if __name__ == "__main__":
    sys.exit(main())
