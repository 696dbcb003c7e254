"""What can stop a replay that is no bug of ours: it no longer follows the trace,
or the trace ends before the program did."""

from __future__ import annotations


class Divergence(Exception):
    """The replay no longer follows the recording; the message names the event."""

    def __init__(self, event_no: int, message: str) -> None:
        super().__init__(f"replay diverged at event {event_no}: {message}")
        self.event_no = event_no
        self.detail = message


class TraceEnds(Exception):
    """The trace stops before the program did: the recorder was killed or stopped early."""

    def __init__(self, event_no: int) -> None:
        super().__init__(f"the trace ends at event {event_no}, before the program did (the "
                         "recording was cut short)")
        self.event_no = event_no
