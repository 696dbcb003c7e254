"""`replay -a` echoes what the program wrote to its stdout and stderr, whatever call
wrote it, byte for byte as the native run wrote it: into a pipe, and into a file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from runner import RETROGRADE, native, record, replay

MiB = 1 << 20


def _into_file(argv: list, out: Path) -> subprocess.CompletedProcess:
    """Run ``argv`` with stdout a fresh regular file ``out`` (stderr captured)."""
    with open(out, "wb") as f:
        return subprocess.run([str(a) for a in argv], stdout=f, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, timeout=120)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    work = tmp_path / "scratch"
    work.mkdir()
    return work


def test_every_output_call_is_echoed_into_a_pipe(programs, trace_root, scratch):
    ran = native([programs.outputs, scratch])
    assert ran.returncode == 0, ran.stderr
    # Into a pipe: the calls that need a file fail, the others write.
    for line in (b"writev [writev done]\n", b"from a file: sendfile [sendfile done]\n",
                 b"from a file: splice [splice from a file done]\n",
                 b"through a pipe: splice [splice from a pipe done]\n",
                 b"vmsplice [vmsplice done]\n", b" [copy_file_range failed]\n",
                 b"through a dup of stdout [write to the dup done]\n"):
        assert line in ran.stdout
    recorded = record([programs.outputs, scratch])
    assert recorded.stdout == ran.stdout
    replayed = replay(None)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == ran.stdout
    assert replayed.stderr == b"to stderr\n"


def test_every_output_call_is_echoed_into_a_file(programs, trace_root, scratch, tmp_path):
    ran = _into_file([programs.outputs, scratch], tmp_path / "native.out")
    assert ran.returncode == 0, ran.stderr
    expected = (tmp_path / "native.out").read_bytes()
    # Into a file: copy_file_range and pwrite work, pwrite64 at offset 0 over "write".
    assert expected.startswith(b"pwritev4rite done]\n")
    assert b"from a file: copy_file_range| [copy_file_range done]\n" in expected
    assert b"through a pipe: splice [splice from a pipe done]\n" in expected
    recorded = _into_file([*RETROGRADE, "record", "--", programs.outputs, scratch],
                          tmp_path / "recorded.out")
    assert recorded.returncode == 0, recorded.stderr
    assert (tmp_path / "recorded.out").read_bytes() == expected
    replayed = _into_file([*RETROGRADE, "replay", "-a"], tmp_path / "replayed.out")
    assert replayed.returncode == 0, replayed.stderr
    assert (tmp_path / "replayed.out").read_bytes() == expected


@pytest.mark.parametrize("into", ["pipe", "file"])
def test_cat_of_a_large_file_is_echoed(trace_root, tmp_path, into):
    # Into a file, cat copies with copy_file_range: the bytes never pass through its memory.
    big = tmp_path / "big.bin"
    contents = os.urandom(3 * MiB) + b"the end\n"
    big.write_bytes(contents)
    if into == "pipe":
        recorded = record(["cat", big])
        assert recorded.stdout == contents
        big.unlink()  # replay needs nothing but the trace
        replayed = replay(None)
        out = replayed.stdout
    else:
        _into_file([*RETROGRADE, "record", "--", "cat", big], tmp_path / "rec.out")
        assert (tmp_path / "rec.out").read_bytes() == contents
        big.unlink()
        replayed = _into_file([*RETROGRADE, "replay", "-a"], tmp_path / "rep.out")
        out = (tmp_path / "rep.out").read_bytes()
    assert replayed.returncode == 0, replayed.stderr
    assert out == contents
