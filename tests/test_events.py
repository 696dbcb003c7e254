import msgpack

from retrograde.trace.events import Event, ExecEvent, MappingRecord, SyscallEvent


def test_syscall_event_survives_the_wire():
    event = SyscallEvent(task=7, nr=0, args=(3, 0x1000, 16, 0, 0, 0), result=5,
                         writes=((0x1000, b"hello"),))
    assert Event.from_wire(msgpack.unpackb(msgpack.packb(event.to_wire()))) == event


def test_exec_event_keeps_its_mappings():
    stack = MappingRecord(0x7ff000, 0x800000, "rw-p", 0, "[stack]", contents=b"\0" * 16)
    event = ExecEvent(task=7, path="/bin/true", argv=("true",), mappings=[stack], regs=b"r")
    back = Event.from_wire(msgpack.unpackb(msgpack.packb(event.to_wire())))
    assert back == event
    assert back.mappings[0].contents == b"\0" * 16


def test_task_events_survive_the_wire():
    from retrograde.trace.events import CloneEvent, PreemptEvent, SyscallEntryEvent

    for event in (CloneEvent(task=8, parent=7, process=7, flags=0x3D0F00,
                             writes=((0x7000, b"\x08\0\0\0"),)),
                  SyscallEntryEvent(task=8, nr=202, args=(0x7000, 0, 2, 0, 0, 0)),
                  PreemptEvent(task=7, regs=b"r" * 216, xstate=b"x", digest=b"d")):
        assert Event.from_wire(msgpack.unpackb(msgpack.packb(event.to_wire()))) == event
