"""The session the script-export tests record and replay, for USB and LAN alike."""

from __future__ import annotations

import pytest

from app.usbtmc import NotSupportedError, TmcTimeoutError


def exercise(session, *, lacks: tuple[str, ...] = (), trigger: bool = False) -> list[bytes]:
    """Writes with unusual terminations, queries, a read, a clear, a timeout, a status byte, an
    SRQ wait and (``trigger``) a trigger on ``session``; the replies, in order. An operation
    named in ``lacks`` (``"clear"``, ``"wait_srq"``) must raise NotSupportedError instead."""

    def maybe(name: str, *args) -> None:
        if name in lacks:
            with pytest.raises(NotSupportedError):
                getattr(session, name)(*args)
        else:
            getattr(session, name)(*args)

    replies = [session.query_raw(b"*IDN?\n")]
    session.write_raw(b"*CLS\r\n")  # an unusual termination, repeated exactly
    session.write("PARAM:SET 1,2")
    replies.append(session.query_raw(b"PARAM:ENQ?\n"))
    session.write("*ESR?")
    replies.append(session.read_raw())
    maybe("clear")
    with pytest.raises(TmcTimeoutError):
        session.query("NO:SUCH:QUERY?")
    session.read_stb()
    session.write("*ESE 32;*SRE 32")
    session.write("BOGUS")
    maybe("wait_srq", 1000)
    replies.append(session.query_raw(b"*ESR?\n"))
    if trigger:
        session.trigger()
    return replies
