# gdb commands for debugging a retrograde replay. `retrograde replay` loads this
# file into the gdb it starts; with `retrograde replay -s PORT`, `source` it
# (the server prints the line to use).

# A long seek answers a monitor command slowly: wait for it.
set remotetimeout 300

# Stepping commands (stepi, step, next and their reverse) are for the thread
# gdb has selected: with scheduler-locking off gdb would ask to step "any
# thread" (Hc0 before bs), and after `thread N` the server could not tell
# which one was meant. The replay still runs the other threads' recorded
# slices in between, as it must; `continue` resumes the whole program.
# (gdb takes the setting only once connected: a hook on `target remote`.)
define target hookpost-remote
  set scheduler-locking step
end
define target hookpost-extended-remote
  set scheduler-locking step
end

# Monitor commands can move the replay in time (restart NAME, reverse-roll N)
# behind gdb's back: gdb re-reads registers, frames and memory only after a
# stop it saw, so drop what it cached after every monitor command.
define hookpost-monitor
  maintenance flush register-cache
  maintenance flush dcache
end

define reverse-roll
  if $argc == 0
    reverse-stepi
  else
    monitor reverse-roll $arg0
    # Where the roll ended, as a reverse-stepi shows it.
    frame
  end
end
document reverse-roll
Step back N instructions in one seek: reverse-roll N (no N: reverse-stepi).
end

define when
  monitor when
end
document when
Print the current position in the recording (event number and place inside it).
end

# `last EXPR` and `history [--json] EXPR [N]`: a value's changes, found with a
# write watchpoint and reverse-continue. Going backwards, a watchpoint stops
# just before the write, so the value there is the old one and the value at
# the stop before (later in time) the new one.
python
import json
import re

import gdb


def _retrograde_position():
    text = gdb.execute("monitor when", to_string=True).strip()
    return re.sub(r" \(of \d+ events\)$", "", text)


def _retrograde_changes(expression, limit):
    """Walk back through the changes of EXPRESSION: (position, location, old, new), newest first."""
    watch = gdb.Breakpoint(expression, gdb.BP_WATCHPOINT, gdb.WP_WRITE, internal=True)
    try:
        later = str(gdb.parse_and_eval(expression))
        while limit is None or limit > 0:
            hits = watch.hit_count
            gdb.execute("reverse-continue", to_string=True)
            if not watch.is_valid() or watch.hit_count == hits:
                return  # the start of the recording, another stop, or out of scope
            earlier = str(gdb.parse_and_eval(expression))
            sal = gdb.selected_frame().find_sal()
            where = f"{sal.symtab.filename}:{sal.line}" if sal.symtab else hex(
                gdb.selected_frame().pc())
            yield _retrograde_position(), where, earlier, later
            later = earlier
            if limit is not None:
                limit -= 1
    finally:
        if watch.is_valid():
            watch.delete()


class _RetrogradeLast(gdb.Command):
    """Go back to where EXPR last changed: last EXPR.
Prints the old and the new value, the location and the position (monitor when)."""

    def __init__(self):
        super().__init__("last", gdb.COMMAND_RUNNING, gdb.COMPLETE_EXPRESSION)

    def invoke(self, argument, from_tty):
        if not argument.strip():
            raise gdb.GdbError("usage: last EXPR")
        changes = list(_retrograde_changes(argument, 1))
        if not changes:
            raise gdb.GdbError(f"{argument} did not change in the recorded history before here")
        position, where, old, new = changes[0]
        print(f"{argument}: {old} -> {new}\n  at {where}, {position}")
        gdb.execute("frame", to_string=False)


class _RetrogradeHistory(gdb.Command):
    """List the changes of EXPR, newest first: history [--json] EXPR [N].
N: only the last N changes (default: all). Each line is the position (monitor
when), the source line of the write and old -> new. The replay comes back to
where it was."""

    def __init__(self):
        super().__init__("history", gdb.COMMAND_DATA, gdb.COMPLETE_EXPRESSION)

    def invoke(self, argument, from_tty):
        words = argument.split()
        as_json = words[:1] == ["--json"]
        if as_json:
            words = words[1:]
        limit = None
        if len(words) > 1 and words[-1].isdigit():
            limit = int(words.pop())
        expression = " ".join(words)
        if not expression:
            raise gdb.GdbError("usage: history [--json] EXPR [N]")
        gdb.execute("monitor checkpoint retrograde-history", to_string=True)
        try:
            changes = list(_retrograde_changes(expression, limit))
        finally:
            gdb.execute("monitor restart retrograde-history", to_string=True)
            gdb.execute("maintenance flush register-cache", to_string=True)
        if as_json:
            print(json.dumps([{"position": p, "location": w, "old": o, "new": n}
                              for p, w, o, n in changes]))
            return
        if not changes:
            print(f"{expression}: no change in the recorded history before here")
        for number, (position, where, old, new) in enumerate(changes, 1):
            print(f"#{number}  {position}  {where}  {old} -> {new}")


_RetrogradeLast()
_RetrogradeHistory()
end
