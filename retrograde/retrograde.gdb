# gdb commands for debugging a retrograde replay. `retrograde replay` loads this
# file into the gdb it starts; with `retrograde replay -s PORT`, `source` it
# (the server prints the line to use).

# A long seek answers a monitor command slowly: wait for it.
set remotetimeout 300

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
