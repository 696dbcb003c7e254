"""Fixtures for the whole suite: the compiled test programs, a private trace directory,
and the servers and gdbs of a test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gdb_driver import Debugging

PROGRAMS_DIR = Path(__file__).parent / "programs"
BUILD_DIR = PROGRAMS_DIR / "build"
CFLAGS = ["-g", "-O0", "-fno-omit-frame-pointer", "-Wall"]
EXTRA_FLAGS = {"threads": ["-pthread"], "trio": ["-pthread"], "mt": ["-pthread"],
               "procs": ["-pthread"], "workers": ["-pthread"], "sysbuf_mix": ["-pthread"]}
# Binaries built from another program's source: name -> (source stem, extra flags).
VARIANTS = {"hello_static": ("hello", ["-static"])}


class Programs(Mapping[str, Path]):
    """The compiled test programs by name: `programs["hello"]` or `programs.hello`."""

    def __init__(self, binaries: dict[str, Path]) -> None:
        self._binaries = binaries

    def __getitem__(self, name: str) -> Path:
        return self._binaries[name]

    def __getattr__(self, name: str) -> Path:
        try:
            return self.__dict__["_binaries"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._binaries)

    def __len__(self) -> int:
        return len(self._binaries)


def _compile(name: str, source: Path, flags: list[str]) -> str | None:
    """Build BUILD_DIR/name unless it is newer than its source; gcc's message if that fails."""
    binary = BUILD_DIR / name
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return None
    # Link to a private name and rename it into place: another pytest session
    # may be running the old binary, or compiling the same one.
    partial = BUILD_DIR / f".{name}.{os.getpid()}"
    gcc = subprocess.run(["gcc", *CFLAGS, *flags, "-o", str(partial), str(source)],
                         capture_output=True, text=True)
    if gcc.returncode != 0:
        partial.unlink(missing_ok=True)
        return " ".join(["gcc", *flags, source.name]) + ":\n" + gcc.stderr
    partial.replace(binary)
    return None


@pytest.fixture(scope="session")
def programs() -> Programs:
    sources = {path.stem: path for path in sorted(PROGRAMS_DIR.glob("*.c"))}
    targets = {name: (path, EXTRA_FLAGS.get(name, [])) for name, path in sources.items()}
    targets |= {name: (sources[stem], flags) for name, (stem, flags) in VARIANTS.items()}
    BUILD_DIR.mkdir(exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        builds = [pool.submit(_compile, name, *target) for name, target in targets.items()]
    failures = [message for build in builds if (message := build.result())]
    if failures:
        pytest.exit("test programs do not compile:\n" + "\n".join(failures), returncode=1)
    return Programs({name: BUILD_DIR / name for name in targets})


@pytest.fixture
def trace_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty RETROGRADE_DIR of this test's own, so its traces land nowhere else."""
    root = tmp_path / "traces"
    root.mkdir()
    monkeypatch.setenv("RETROGRADE_DIR", str(root))
    return root


@pytest.fixture
def debug() -> Iterator[Debugging]:
    """debug.start(trace) -> (gdb, server); debug.gdb() -> one more gdb. All end with the test."""
    with Debugging() as debugging:
        yield debugging
