"""retrograde.gdbstub: the GDB remote serial protocol in front of a replay.

`serve(target, host, port)` serves any `DebugTarget` to gdb; `Stop` is how the
target says why it stopped. The codec, the session and the register layout are
in `codec`, `server` and `registers`; the packets only lldb sends in `lldb`.
"""

from .server import ServerError, serve
from .target import DebugTarget, Stop

__all__ = ["DebugTarget", "ServerError", "Stop", "serve"]
