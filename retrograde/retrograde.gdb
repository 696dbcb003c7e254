# gdb commands for debugging a retrograde replay; `retrograde replay` loads this file.

# A long seek answers a monitor command slowly: wait for it.
set remotetimeout 300

define reverse-roll
  if $argc == 0
    reverse-stepi
  else
    monitor reverse-roll $arg0
    # The position changed behind gdb's back: drop its cached registers, frames
    # and memory.
    maintenance flush register-cache
    maintenance flush dcache
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
