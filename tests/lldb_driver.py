"""Real lldb against a real replay server: Debian's lldb-16 in batch mode, with
default settings (no init files), connected with `gdb-remote`.

`lldb_batch` runs a list of lldb commands in one lldb and returns what each
printed. lldb's batch mode stops running commands at a stop it takes for a
crash (any signal but SIGINT and SIGSTOP, or an exception); the commands
given as ``after_stop`` run from there (lldb's `-k`). A replay's end of
history is such a stop for lldb 16, which has no notion of one.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from gdb_driver import ReplayServer

LLDB = shutil.which("lldb-16")
needs_lldb = pytest.mark.skipif(LLDB is None, reason="needs lldb-16 (make test installs it)")


@dataclass(frozen=True)
class Said:
    """One command of an lldb session and what lldb printed in answer."""

    command: str
    output: str


def _split(transcript: str) -> list[Said]:
    """The transcript cut at lldb's echo of each command ("(lldb) COMMAND")."""
    said: list[Said] = []
    for line in transcript.splitlines(keepends=True):
        if line.startswith("(lldb) "):
            said.append(Said(line[len("(lldb) "):].rstrip("\n"), ""))
        elif said:
            said[-1] = Said(said[-1].command, said[-1].output + line)
    return said


def lldb_batch(server: ReplayServer, program: Path, commands: Sequence[str],
               after_stop: Sequence[str] = (), timeout: float = 120) -> list[Said]:
    """`lldb-16 PROGRAM`, `gdb-remote` to ``server``, then ``commands`` (and
    ``after_stop`` once lldb stops running them); what each command printed,
    the connection first. Fails unless every command ran."""
    assert LLDB is not None, "needs lldb-16"
    connect = f"gdb-remote {server.address}"
    argv = [LLDB, "--no-lldbinit", "--batch", str(program), "-o", connect]
    for command in commands:
        argv += ["-o", command]
    for command in after_stop:
        argv += ["-k", command]
    done = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    said = _split(done.stdout)
    ran = [s.command for s in said if s.command != f"target create \"{program}\""]
    assert ran == [connect, *commands, *after_stop], done.stdout
    return [s for s in said if s.command in ran]
