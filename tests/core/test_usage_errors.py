"""Requests USBTMC cannot carry are refused with a typed error before anything is sent."""

from __future__ import annotations

import pytest

from app.sim.sam7 import IDN
from app.usbtmc.errors import TmcError, TmcTimeoutError, UsageError
from app.usbtmc.recovery import RecoveryReport


def test_an_empty_message_is_a_usage_error_and_nothing_is_sent(sam7, transfer_log):
    transfer_log.writes.clear()
    for send in (lambda: sam7.write_raw(b""), lambda: sam7.write_stream([b"", b""]), lambda: sam7.write_vendor(b"")):
        with pytest.raises(UsageError, match="at least one byte") as caught:
            send()
        assert isinstance(caught.value, TmcError) and isinstance(caught.value, ValueError)
    assert transfer_log.writes == []
    assert sam7.query("*IDN?") == IDN


def test_a_term_char_on_a_device_without_the_capability_is_refused(sam7):
    assert not sam7.capabilities.term_char  # the SAM7 design has no TermChar
    with pytest.raises(UsageError, match="does not support TermChar"):
        sam7.term_char = 0x0A
    assert sam7.term_char is None
    sam7.term_char = None  # clearing it is always fine


def test_a_term_char_is_accepted_where_the_device_has_it(loopback):
    assert loopback.capabilities.term_char
    loopback.term_char = ord("\n")
    assert loopback.active_term_char() == 0x0A
    with pytest.raises(UsageError, match="one byte"):
        loopback.term_char = 256


def test_nonsense_timeouts_and_read_sizes_are_usage_errors(sam7):
    with pytest.raises(UsageError):
        sam7.timeout_ms = 0
    with pytest.raises(UsageError):
        sam7.read_raw(0)
    assert sam7.timeout_ms == 300


def test_an_error_says_usable_only_when_its_recovery_said_so():
    assert UsageError("x").usable is None and str(UsageError("x")) == "x"
    done = TmcTimeoutError("late", RecoveryReport(("aborted Bulk-IN transfer bTag 3",), True))
    assert done.usable is True and str(done) == "late (aborted Bulk-IN transfer bTag 3; the session is usable)"
    failed = TmcTimeoutError("late", RecoveryReport(("aborted",), False, "recovery failed: gone quiet"))
    assert failed.usable is False and "the session is usable" not in failed.recovery
    assert "gone quiet" in failed.recovery and "reopen" in failed.recovery
