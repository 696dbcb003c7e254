"""`retrograde pack`: a trace tied to the outside (a deduplicating tool made its
copies links) is made self-contained, moved, and replayed after the originals
are gone."""

from __future__ import annotations

import os
import shutil

from runner import record, replay, retrograde

from retrograde.trace.events import ExecEvent
from retrograde.trace.format import TraceReader


def test_a_packed_trace_replays_after_a_move_with_its_originals_deleted(programs, trace_root,
                                                                        tmp_path):
    program = tmp_path / "hello"
    shutil.copy(programs.hello, program)
    recorded = record([program], out=trace_root / "hello-0")
    assert recorded.returncode == 3
    trace = trace_root / "hello-0"
    with TraceReader(trace) as reader:
        exec_event = reader[0]
        assert isinstance(exec_event, ExecEvent)
        program_copy = next(m.file_hash for m in exec_event.mappings if m.name == str(program))
        others = sorted({m.file_hash for m in exec_event.mappings
                         if m.file_hash and m.file_hash != program_copy})
    copies = sorted(p.name for p in (trace / "files").iterdir())
    # What `rdfind -makesymlinks` or `hardlink` would leave: the program's copy a link
    # to the program itself, another copy a hard link shared with a file outside.
    (trace / "files" / program_copy).unlink()
    (trace / "files" / program_copy).symlink_to(program)
    shared = tmp_path / "shared-copy"
    os.link(trace / "files" / others[0], shared)
    (trace / "files" / ".tmp-12345").write_bytes(b"left by a killed recorder")
    refused = replay(trace)
    assert refused.returncode == 1 and "symbolic link" in refused.stderr.decode()

    packed = retrograde("pack", trace)
    assert packed.returncode == 0, packed.stderr
    assert packed.stderr.decode() == (f"retrograde: packed {trace}: 2 links made copies of "
                                      "their own, 1 temporary files removed; "
                                      f"{len(copies)} files, all checked\n")
    stored = sorted((trace / "files").iterdir())
    assert [p.name for p in stored] == copies
    assert all(not p.is_symlink() and p.stat().st_nlink == 1 for p in stored)

    moved = tmp_path / "elsewhere" / "hello-0"
    moved.parent.mkdir()
    shutil.move(trace, moved)
    program.unlink()
    shared.unlink()
    replayed = replay(moved)
    assert (replayed.returncode, replayed.stdout) == (3, b"hello, world\n"), replayed.stderr
    assert retrograde("pack", moved).returncode == 0  # packing twice changes nothing


def test_pack_refuses_a_link_to_contents_that_are_not_the_recorded_ones(programs, trace_root,
                                                                         tmp_path):
    record([programs.hello], out=trace_root / "hello-0")
    trace = trace_root / "hello-0"
    victim = min((trace / "files").iterdir())
    other = tmp_path / "other"
    other.write_bytes(b"not the recorded bytes")
    victim.unlink()
    victim.symlink_to(other)
    packed = retrograde("pack", trace)
    err = packed.stderr.decode()
    assert packed.returncode == 1
    assert err == (f"retrograde: trace {victim} links to a file whose contents are not the "
                   f"recorded ones (they do not hash to {victim.name})\n")
    assert victim.is_symlink()  # left as it was: nothing is packed from a wrong source
