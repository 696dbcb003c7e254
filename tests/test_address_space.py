"""The address-space model (replay/address_space.py), alone and against the kernel.

The property test is DESIGN.md's "address-space model against the real kernel": a
real traced process (the replay stub, stopped at its execve exit where syscalls may
be injected) runs random mmap/munmap/mprotect/mremap/brk/shmat/shmdt sequences, each call that
succeeded (and each mprotect that failed on a hole: it has changed what comes before
the hole) is applied to an ``AddressSpace``, and after every call the model must
agree with /proc/PID/maps. All calls stay in a private window
far from the stub page, the stack and the vDSO; an address the kernel picks itself
(mmap without MAP_FIXED, mremap with only MREMAP_MAYMOVE) may land outside it and is
released again at once.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from retrograde.replay.address_space import AddressSpace, Mapping, kind_of, prot_perms
from retrograde.replay.stub import write_stub
from retrograde.trace.events import MappingRecord
from retrograde.tracee import page as rpage
from retrograde.tracee.maps import KernelMapping, page_up, parse_maps
from retrograde.tracee.process import PTRACE_SYSCALL, Tracee
from retrograde.tracee.syscalls import syscall_number

PAGE = 4096
STUB_PAGE = rpage.DEFAULT_ADDRESS
WINDOW = 0x100000000  # [WINDOW, WINDOW_END): nothing else lives there
WINDOW_PAGES = 256
WINDOW_END = WINDOW + WINDOW_PAGES * PAGE
HEAP = WINDOW + 192 * PAGE  # where the emulated brk heap starts (it grows up to 32 pages)
FILE_PAGES = 16

PROT_READ, PROT_WRITE = 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x1, 0x2, 0x10, 0x20
MAP_FIXED_NOREPLACE = 0x100000
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4
IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0
SHM_RDONLY, SHM_REMAP = 0o10000, 0o40000
AT_FDCWD = -100

RW_PRIVATE = "rw-p"


def record(start: int, end: int, perms: str, name: str = "", offset: int = 0,
           file_hash: str | None = None) -> MappingRecord:
    return MappingRecord(start, end, perms, offset, name, file_hash)


def live(*lines: str) -> list[KernelMapping]:
    return parse_maps("\n".join(lines))


def spans(space: AddressSpace) -> list[tuple[int, int, str]]:
    return [(m.start, m.end, m.perms) for m in space.mappings]


# -- the model on its own -------------------------------------------------------------------

def test_mprotect_of_the_middle_splits_a_mapping_in_three() -> None:
    space = AddressSpace([record(0x10000, 0x15000, RW_PRIVATE, "/lib/data", 0x3000, "f00d")])
    space.protect(0x11000, 0x2000, PROT_READ)
    assert spans(space) == [(0x10000, 0x11000, "rw-p"), (0x11000, 0x13000, "r--p"),
                            (0x13000, 0x15000, "rw-p")]
    assert {m.kind for m in space.mappings} == {"file"}
    assert space.find(0x12fff).perms == "r--p"


def test_mprotect_keeps_a_shared_mapping_shared() -> None:
    space = AddressSpace([record(0x10000, 0x12000, "rw-s", "/dev/zero (deleted)")])
    space.protect(0x10000, 0x1000, PROT_READ)
    assert spans(space) == [(0x10000, 0x11000, "r--s"), (0x11000, 0x12000, "rw-s")]


def test_mprotect_of_no_bytes_changes_nothing() -> None:
    # mprotect(addr, 0, prot) succeeds and does nothing; the model must not grow an
    # empty mapping at addr (it would stop check() from merging the two sides).
    space = AddressSpace([record(0x10000, 0x14000, RW_PRIVATE)])
    space.protect(0x12000, 0, PROT_READ)
    assert spans(space) == [(0x10000, 0x14000, "rw-p")]
    assert space.check(live("10000-14000 rw-p 00000000 00:00 0")) is None


def test_mprotect_over_a_hole_changes_what_comes_before_it() -> None:
    # mprotect(2) fails with ENOMEM at the first unmapped page, after changing the
    # mappings before it (mm/mprotect.c walks the VMAs in order).
    space = AddressSpace([record(0x10000, 0x12000, RW_PRIVATE), record(0x13000, 0x15000, RW_PRIVATE)])
    space.protect(0x11000, 0x4000, PROT_READ)
    assert spans(space) == [(0x10000, 0x11000, "rw-p"), (0x11000, 0x12000, "r--p"),
                            (0x13000, 0x15000, "rw-p")]
    space.protect(0x12000, 0x2000, PROT_READ)  # starts in the hole: nothing changes
    assert space.find(0x13000).perms == "rw-p"


def test_munmap_of_the_middle_leaves_a_hole() -> None:
    space = AddressSpace([record(0x10000, 0x14000, "r-xp", "/bin/true", 0, "beef")])
    space.unmap(0x11000, 0x1800)  # the length is rounded up to whole pages
    assert spans(space) == [(0x10000, 0x11000, "r-xp"), (0x13000, 0x14000, "r-xp")]
    assert space.find(0x11000) is None and space.find(0x12fff) is None
    assert space.find(0x13000).recorded.name == "/bin/true"


def test_munmap_across_mappings_and_holes() -> None:
    space = AddressSpace([record(0x10000, 0x12000, RW_PRIVATE), record(0x13000, 0x14000, "r--p"),
                          record(0x16000, 0x18000, RW_PRIVATE)])
    space.unmap(0x11000, 0x6000)
    assert spans(space) == [(0x10000, 0x11000, "rw-p"), (0x17000, 0x18000, "rw-p")]


def test_mremap_moves_and_grows_a_mapping() -> None:
    space = AddressSpace([record(0x10000, 0x12000, "r--p", "/etc/hosts", 0x1000, "cafe"),
                          record(0x40000, 0x41000, RW_PRIVATE)])
    space.remap(0x10000, 0x2000, 0x40000, 0x3000)  # MREMAP_FIXED over what is there
    assert spans(space) == [(0x40000, 0x43000, "r--p")]
    moved = space.find(0x42000)
    assert moved.kind == "file" and moved.recorded.name == "/etc/hosts"
    assert space.find(0x10000) is None


def test_mremap_shrinks_in_place() -> None:
    space = AddressSpace([record(0x10000, 0x14000, RW_PRIVATE)])
    space.remap(0x10000, 0x4000, 0x10000, 0x1001)
    assert spans(space) == [(0x10000, 0x12000, "rw-p")]


def test_mremap_with_dontunmap_keeps_the_old_range() -> None:
    space = AddressSpace([record(0x10000, 0x12000, RW_PRIVATE)])
    space.remap(0x10000, 0x2000, 0x30000, 0x2000, dontunmap=True)
    assert spans(space) == [(0x10000, 0x12000, "rw-p"), (0x30000, 0x32000, "rw-p")]


def test_mremap_of_size_zero_duplicates_a_shared_mapping() -> None:
    space = AddressSpace([record(0x10000, 0x12000, "rw-s", "/dev/shm/x", 0, "d00d")])
    space.remap(0x11000, 0, 0x30000, 0x1000)
    assert spans(space) == [(0x10000, 0x12000, "rw-s"), (0x30000, 0x31000, "rw-s")]


def test_brk_growth_is_a_heap_mapping() -> None:
    space = AddressSpace([])
    space.map(record(0x20000, 0x23000, RW_PRIVATE, "[heap]"))
    assert space.find(0x22000).kind == "heap" == kind_of(space.find(0x22000).recorded)


def test_copy_is_independent() -> None:
    space = AddressSpace([record(0x10000, 0x12000, RW_PRIVATE)])
    copy = space.copy()
    copy.unmap(0x10000, 0x1000)
    assert spans(space) == [(0x10000, 0x12000, "rw-p")]
    assert spans(copy) == [(0x11000, 0x12000, "rw-p")]


def test_check_merges_what_the_kernel_merges() -> None:
    # Two adjacent anonymous mmaps with equal permissions are one VMA in the kernel.
    space = AddressSpace([record(0x10000, 0x12000, RW_PRIVATE), record(0x12000, 0x13000, RW_PRIVATE),
                          record(0x13000, 0x14000, "r--p")])
    assert space.check(live("10000-13000 rw-p 00000000 00:00 0",
                            "13000-14000 r--p 00000000 00:00 0",
                            "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]")) \
        is None


def test_check_ignores_the_growth_of_the_stack() -> None:
    space = AddressSpace([record(0x7ff000000, 0x7ff021000, RW_PRIVATE, "[stack]")])
    assert space.check(live("7fefff000-7ff021000 rw-p 00000000 00:00 0  [stack]")) is None


def test_check_reports_both_views_of_a_difference() -> None:
    space = AddressSpace([record(0x10000, 0x13000, RW_PRIVATE), record(0x20000, 0x21000, "r-xp")])
    problem = space.check(live("10000-12000 rw-p 00000000 00:00 0",
                               "12000-13000 r--p 00000000 00:00 0",
                               "20000-21000 r-xp 00000000 00:00 0"))
    assert problem == "model has 10000-13000 rw-; kernel has 10000-12000 rw-, 12000-13000 r--"
    assert space.check(live("20000-21000 r-xp 00000000 00:00 0")) == \
        "model has 10000-13000 rw-; kernel has nothing"


# -- the model against the kernel --------------------------------------------------------------

@contextmanager
def stub_process() -> Iterator[Tracee]:
    """The replay stub at its execve exit stop, where ``inject_syscall`` is allowed."""
    tracee = Tracee.spawn([str(write_stub(STUB_PAGE))], env={}, trap_tsc=False)
    try:
        tracee.resume(PTRACE_SYSCALL)
        assert tracee.wait().kind == "syscall"
        yield tracee
    finally:
        tracee.kill()


def in_window(start: int, size: int) -> bool:
    return WINDOW <= start and start + page_up(size) <= WINDOW_END


window_pages = st.integers(0, WINDOW_PAGES - 1)
page_counts = st.integers(1, 24)
prots = st.integers(0, 7)
# Lengths need not be page multiples: the kernel rounds them up, so must the model.
slacks = st.sampled_from([0, 1, PAGE // 2])
# Where a call starts: ("page", n, _) is page n of the window, ("mapping", i, j) page j of
# the i-th mapping there (both modulo), so that calls often meet what is mapped.
starts = st.one_of(st.tuples(st.just("page"), window_pages, st.just(0)),
                   st.tuples(st.just("mapping"), st.integers(0, 63), st.integers(0, 63)))
REMAP_MODES = {
    "in place": 0,
    "may move": MREMAP_MAYMOVE,
    "move": MREMAP_MAYMOVE | MREMAP_FIXED,  # same size: may span mappings and holes (6.17+)
    "move and resize": MREMAP_MAYMOVE | MREMAP_FIXED,
    "dontunmap": MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
    "duplicate": MREMAP_MAYMOVE | MREMAP_FIXED,
}


class KernelAgreesWithModel(RuleBasedStateMachine):
    """One stub process per example; each rule makes one call there and in the model."""

    def __init__(self, data_file: Path) -> None:
        super().__init__()
        self.data_file = data_file
        self._resources = ExitStack()
        self.tracee = self._resources.enter_context(stub_process())
        try:
            # The model starts from what the kernel shows, as after an emulated exec.
            self.space = AddressSpace([
                MappingRecord(k.start, k.end, k.perms, k.offset, k.name)
                for k in parse_maps(self.tracee.read_maps()) if k.name != "[vsyscall]"])
            self.fd = self._open_in_tracee(data_file)
        except BaseException:
            self.teardown()
            raise
        self.brk = HEAP

    def teardown(self) -> None:
        self._resources.close()

    def _syscall(self, name: str, *args: int) -> int:
        return self.tracee.inject_syscall(STUB_PAGE + rpage.SYSCALL_OFFSET, syscall_number(name),
                                          *args)

    def _open_in_tracee(self, path: Path) -> int:
        scratch = STUB_PAGE + rpage.SCRATCH_OFFSET
        self.tracee.write(scratch, str(path).encode() + b"\0")
        fd = self._syscall("openat", AT_FDCWD, scratch, os.O_RDWR, 0)
        assert fd >= 0, f"openat {path} in the stub: errno {-fd}"
        return fd

    def _release_outside_window(self, start: int, size: int) -> None:
        """An address the kernel chose may be anywhere: check it there, then give it back."""
        if in_window(start, size):
            return
        self.kernel_agrees()
        assert self._syscall("munmap", start, size) == 0
        self.space.unmap(start, size)

    # -- mmap ------------------------------------------------------------------------------
    def _mmap(self, page: int, pages: int, slack: int, prot: int, shared: bool, placement: str,
              fd: int, offset: int, name: str, file_hash: str | None) -> None:
        addr, length = WINDOW + page * PAGE, pages * PAGE - slack
        if not in_window(addr, length):
            return
        flags = (MAP_SHARED if shared else MAP_PRIVATE) | (MAP_ANONYMOUS if fd < 0 else 0) | \
            {"hint": 0, "fixed": MAP_FIXED, "noreplace": MAP_FIXED_NOREPLACE}[placement]
        result = self._syscall("mmap", addr, length, prot, flags, fd, offset)
        if placement == "noreplace" and result == -errno.EEXIST:
            return
        assert result >= 0, f"mmap failed with errno {-result}"
        if placement != "hint":
            assert result == addr
        self.space.map(MappingRecord(result, result + page_up(length), prot_perms(prot, shared),
                                     offset, name, file_hash))
        self._release_outside_window(result, length)

    @rule(page=window_pages, pages=page_counts, slack=slacks, prot=prots, shared=st.booleans(),
          placement=st.sampled_from(["hint", "fixed", "noreplace"]))
    def mmap_anonymous(self, page: int, pages: int, slack: int, prot: int, shared: bool,
                       placement: str) -> None:
        self._mmap(page, pages, slack, prot, shared, placement, -1, 0, "", None)

    @rule(page=window_pages, pages=page_counts, slack=slacks, prot=prots, shared=st.booleans(),
          placement=st.sampled_from(["hint", "fixed", "noreplace"]),
          file_page=st.integers(0, FILE_PAGES - 1))
    def mmap_file(self, page: int, pages: int, slack: int, prot: int, shared: bool,
                  placement: str, file_page: int) -> None:
        # Past the end of the file is fine: only touching those pages would fault.
        self._mmap(page, pages, slack, prot, shared, placement, self.fd, file_page * PAGE,
                   str(self.data_file), "data")

    # -- munmap, mprotect --------------------------------------------------------------------
    def _start(self, where: tuple[str, int, int]) -> int:
        kind, i, j = where
        mine = [m for m in self.space.mappings if in_window(m.start, m.end - m.start)]
        if kind == "page" or not mine:
            return WINDOW + i % WINDOW_PAGES * PAGE
        m = mine[i % len(mine)]
        return m.start + j % ((m.end - m.start) // PAGE) * PAGE

    def _length(self, start: int, pages: int, slack: int, to_its_end: bool) -> int:
        """``pages`` pages (less ``slack`` bytes), or up to the end of the mapping at ``start``."""
        length = max(pages * PAGE - slack, 0)
        m = self.space.find(start)
        return min(length, m.end - start) if to_its_end and m is not None else length

    def _mapped_throughout(self, start: int, end: int) -> bool:
        """Whether the model has no hole in [start, end)."""
        for m in self.space.mappings:
            if m.end <= start:
                continue
            if m.start > start:
                return False
            start = m.end
            if start >= end:
                break
        return start >= end

    def _touches(self, start: int, length: int, what: str) -> bool:
        """Whether [start, start + length) meets a mapping of kind ``what`` (or, given
        permissions such as "r--s", a SysV segment attached read-only)."""
        end = start + page_up(length)
        return any(m.start < end and start < m.end and
                   (m.kind == what or (m.kind == "shm" and m.recorded.perms == what))
                   for m in self.space.mappings)

    @rule(where=starts, pages=page_counts, slack=slacks)
    def munmap(self, where: tuple[str, int, int], pages: int, slack: int) -> None:
        addr = self._start(where)
        length = self._length(addr, pages, slack, False)
        if in_window(addr, length):
            assert self._syscall("munmap", addr, length) == 0
            self.space.unmap(addr, length)

    @rule(where=starts, pages=st.integers(0, 24), slack=slacks, to_its_end=st.booleans(),
          prot=prots)
    def mprotect(self, where: tuple[str, int, int], pages: int, slack: int, to_its_end: bool,
                 prot: int) -> None:
        addr = self._start(where)
        length = self._length(addr, pages, slack, to_its_end)
        if not in_window(addr, length):
            return
        if prot & PROT_WRITE and self._touches(addr, length, "r--s"):
            return  # EACCES part of the way, after what came before: not modelled
        result = self._syscall("mprotect", addr, length, prot)
        # ENOMEM (a hole in the range) comes after the mappings before the hole changed.
        # (A length of zero changes nothing and succeeds.)
        mapped = length == 0 or self._mapped_throughout(addr, addr + page_up(length))
        assert result == (0 if mapped else -errno.ENOMEM)
        self.space.protect(addr, length, prot)

    # -- mremap ----------------------------------------------------------------------------
    @rule(where=starts, old_pages=page_counts, to_its_end=st.booleans(), new_pages=page_counts,
          to_page=window_pages, mode=st.sampled_from(list(REMAP_MODES)))
    def mremap(self, where: tuple[str, int, int], old_pages: int, to_its_end: bool,
               new_pages: int, to_page: int, mode: str) -> None:
        old = self._start(where)
        old_size = self._length(old, old_pages, 0, to_its_end)
        new, new_size = WINDOW + to_page * PAGE, new_pages * PAGE
        flags = REMAP_MODES[mode]
        if mode in ("move", "dontunmap"):
            new_size = old_size  # a move of several mappings, or MREMAP_DONTUNMAP, keeps the size
        elif mode == "duplicate":
            old_size = 0  # a second mapping of the same shared pages
            # MREMAP_FIXED unmaps the destination first; one that covers the source
            # mapping destroys it, and then the call fails (EFAULT) with that done.
            vma = next((k for k in parse_maps(self.tracee.read_maps()) if k.start <= old < k.end),
                       None)
            if vma is not None and new < vma.end and new + new_size > vma.start:
                return
        if self._touches(old, max(old_size, 1), "shm"):
            # Not modelled: which pieces of a segment shmdt detaches after some were
            # moved or grown (their offsets in the segment, and how the kernel merges
            # them), and a move of several mappings that stops at a segment, part done.
            return
        if not in_window(old, old_size) or \
                not in_window(new if flags & MREMAP_FIXED else old, new_size):
            return
        result = self._syscall("mremap", old, old_size, new_size, flags, new)
        if result < 0:
            return
        self.space.remap(old, old_size, result, new_size, dontunmap=mode == "dontunmap")
        self._release_outside_window(result, new_size)

    # -- SysV shared memory ----------------------------------------------------------------
    @rule(page=window_pages, pages=page_counts, slack=slacks, readonly=st.booleans())
    def shmat(self, page: int, pages: int, slack: int, readonly: bool) -> None:
        addr, size = WINDOW + page * PAGE, pages * PAGE - slack
        if not in_window(addr, size):
            return
        shmid = self._syscall("shmget", IPC_PRIVATE, size, IPC_CREAT | 0o600)
        assert shmid >= 0, f"shmget failed with errno {-shmid}"
        result = self._syscall("shmat", shmid, addr, SHM_REMAP | (SHM_RDONLY if readonly else 0))
        assert self._syscall("shmctl", shmid, IPC_RMID, 0) == 0  # gone at its last detach
        assert result == addr, f"shmat failed with errno {-result}"
        self.space.map(MappingRecord(addr, addr + page_up(size), "r--s" if readonly else "rw-s",
                                     0, "/SYSV00000000 (deleted)", f"segment {shmid}"))

    @rule(where=starts)
    def shmdt(self, where: tuple[str, int, int]) -> None:
        addr = self._start(where)
        detached = self.space.attached(addr)
        assert self._syscall("shmdt", addr) == (0 if detached else -errno.EINVAL)
        for start, end in detached:
            self.space.unmap(start, end - start)

    # -- brk -------------------------------------------------------------------------------
    @rule(pages=st.integers(0, 32), slack=slacks)
    def brk(self, pages: int, slack: int) -> None:
        """The heap as ReplaySession._emulate_brk makes it: mmap and munmap at the break."""
        result = HEAP + max(pages * PAGE - slack, 0)
        old_end, new_end = page_up(self.brk), page_up(result)
        if new_end > old_end:
            got = self._syscall("mmap", old_end, new_end - old_end, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0)
            assert got == old_end
            self.space.map(MappingRecord(old_end, new_end, RW_PRIVATE, 0, "[heap]"))
        elif new_end < old_end:
            assert self._syscall("munmap", new_end, old_end - new_end) == 0
            self.space.unmap(new_end, old_end - new_end)
        self.brk = result

    # -- after every step --------------------------------------------------------------------
    @invariant()
    def model_is_sorted_and_disjoint(self) -> None:
        ms: list[Mapping] = self.space.mappings
        assert all(m.start < m.end and m.start % PAGE == 0 == m.end % PAGE for m in ms), ms
        assert all(a.end <= b.start for a, b in itertools.pairwise(ms)), ms

    @invariant()
    def kernel_agrees(self) -> None:
        problem = self.space.check(parse_maps(self.tracee.read_maps()))
        assert problem is None, problem


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("address-space") / "data"
    path.write_bytes(bytes(range(256)) * (FILE_PAGES * PAGE // 256))
    return path


def test_model_follows_the_kernel_through_random_mmap_family_calls(data_file: Path) -> None:
    run_state_machine_as_test(
        lambda: KernelAgreesWithModel(data_file),
        settings=settings(max_examples=80, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]))
