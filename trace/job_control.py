"""Job control of a recording: `retrograde record` stops when its program stops.

A shell waits for the process it started, which is the recorder, not the program.
So that Ctrl-Z, `fg`, `bg` and `kill -STOP/-CONT` work as they do on the program
alone, the recorder follows the program's group-stops (signal(7), "Stop"):

* The terminal's stop signals (SIGTSTP, SIGTTIN, SIGTTOU) reach the recorder too
  (same process group); it ignores them, since whether the program stops is the
  program's business (vim, less and shells catch SIGTSTP).
* When the program enters a group-stop, the recorder leaves it stopped
  (PTRACE_LISTEN) and stops itself with the same signal, so the shell sees the job
  stopped as it would natively (``Stopped``, ``Stopped (tty input)``, ...).
* Once the recorder is continued, the program is continued with it: by the SIGCONT
  already pending for it (`fg` signals the whole process group), or by one the
  recorder sends (a SIGCONT that reached only the recorder, as `kill -CONT PID` of
  the job). Its delivery is recorded as any signal, and so are the handlers it runs.
* A SIGCONT sent to the program alone while the recorder is stopped must continue
  the recorder, but a stopped process runs no code and the kernel tells no one but
  the (stopped) tracer and parent. A watcher process, forked for the length of the
  stop, looks at the program's pending signals and continues the recorder. It polls
  (/proc has no notification for a pending signal); it lives only while stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from types import TracebackType
from typing import Self

_TERMINAL_STOPS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
WATCH_SECONDS = 0.01  # how often the watcher looks at the stopped program


def continue_pending(pid: int) -> bool:
    """Whether a SIGCONT is pending for process ``pid`` (or it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return True
    bit = 1 << (signal.SIGCONT - 1)
    return bool((int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)) & bit)


def task_state(pid: int) -> str:
    """The one-letter state of ``pid`` (proc(5)), "" when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


class JobControl:
    """While entered, this process stops and continues with the recorded program.

    Dispositions are per process and can only be changed from the main thread; a
    recorder run on another thread leaves them alone and never stops itself (the
    program stays stopped until something else continues it).
    """

    def __init__(self) -> None:
        self.enabled = False
        self._saved: dict[int, object] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._saved = {s: signal.signal(s, signal.SIG_IGN) for s in _TERMINAL_STOPS}
            self.enabled = True
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signo, handler in self._saved.items():
            signal.signal(signo, handler)  # type: ignore[arg-type]
        self._saved, self.enabled = {}, False

    def stop_with(self, signo: int, program: int) -> bool:
        """Stop this process as ``program`` stopped, by ``signo``; return once continued
        (True), or at once if this process cannot stop (False).

        A stop signal other than SIGSTOP is discarded in an orphaned process group
        (the kernel's is_current_pgrp_orphaned). The program's own stop proves its
        group is not orphaned; if it has left ours, SIGSTOP stops us for sure.
        """
        if not self.enabled:
            return False
        try:
            same_group = os.getpgid(program) == os.getpgrp()
        except ProcessLookupError:
            return False
        if signo != signal.SIGSTOP and not same_group:
            signo = signal.SIGSTOP
        watcher = self._watch(program)
        try:
            if signo == signal.SIGSTOP:
                signal.raise_signal(signo)
            else:
                signal.signal(signo, signal.SIG_DFL)
                try:
                    signal.raise_signal(signo)
                finally:
                    signal.signal(signo, signal.SIG_IGN)
        finally:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(watcher, signal.SIGKILL)
                os.waitpid(watcher, 0)
        return True

    @staticmethod
    def _watch(program: int) -> int:
        """Fork the watcher: it continues this process when ``program`` has a SIGCONT
        pending or has died (a killed program is this recording's end), once this
        process is stopped, so that the SIGCONT cannot come before the stop."""
        recorder = os.getpid()
        pid = os.fork()
        if pid:
            return pid
        try:  # child: plain calls only, and never back into the caller's code
            while os.getppid() == recorder:
                continued = continue_pending(program) or task_state(program) in ("Z", "X", "")
                if continued and task_state(recorder) == "T":
                    os.kill(recorder, signal.SIGCONT)
                    break
                time.sleep(WATCH_SECONDS)
        finally:
            os._exit(0)
