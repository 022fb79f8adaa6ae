"""Stored settings out of range or of the wrong type fall back to their defaults with a note;
an instrument tab always opens."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings as hsettings
from hypothesis import strategies as st
from PySide6.QtCore import QByteArray, QSettings
from support.ui import open_from_browser, transcript_has

from app.ui.settings import TIMEOUT_RANGE_MS, Settings

SAM7 = "USB0::0x1209::0x0001::SAM7-0001::INSTR"


@pytest.mark.parametrize("timeout, splitter, note", [
    # An INI file holds numbers as text; 10**20 cannot even be stored as a Qt integer.
    (str(10**20), -5, "The stored timeout (ms) of USB0::0x1209::0x0001::SAM7-0001::INSTR ('100000000000000000000') "
                 "is outside 10 to 600,000; using 5000 instead."),
    (-5, "junk", "(-5) is outside 10 to 600,000; using 5000 instead."),
    ("1e9", QByteArray(b"\x00\x00\x00\xff\xff"), "('1e9') is not a whole number; using 5000 instead."),
])
def test_a_tab_opens_with_bad_stored_values_and_says_what_it_replaced(window, settings, qtbot, timeout, splitter, note):
    settings.set_instrument_value(SAM7, "timeout_ms", timeout)
    settings.set_value("console/splitter", splitter)
    tab = open_from_browser(window, qtbot)
    console = tab.console
    assert console.timeout_spin.value() == 5000 and tab.session.timeout_ms == 5000
    assert transcript_has(console, "warning", note)
    assert all(size >= 0 for size in console.splitter.sizes())
    if not isinstance(splitter, QByteArray):
        assert transcript_has(console, "warning", "The stored console layout")


def test_a_negative_splitter_size_in_a_saved_layout_is_replaced(window, settings, qtbot):
    from PySide6.QtWidgets import QSplitter, QWidget

    donor = QSplitter()
    donor.addWidget(QWidget())
    donor.addWidget(QWidget())
    state = bytearray(donor.saveState().data())
    # QSplitter's state: magic, version, then the sizes list (count, sizes as int32 big-endian).
    sizes_at = 8 + 4
    state[sizes_at:sizes_at + 4] = (-300).to_bytes(4, "big", signed=True)
    settings.set_value("console/splitter", QByteArray(bytes(state)))
    console = open_from_browser(window, qtbot).console
    assert all(size >= 0 for size in console.splitter.sizes())


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.integers(-(2**80), 2**80).map(str), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=5)), max_size=4),
    st.binary(max_size=16).map(QByteArray),
)


@hsettings(max_examples=150, deadline=1000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.fixed_dictionaries({key: VALUES for key in (
    "session/timeout_ms", "virtual/mode", "view/theme", "console/error_check", "history/R",
    "instrument/R/timeout_ms", "instrument/R/stb_poll_ms", "aliases/R", "console/splitter")}))
def test_any_stored_values_read_back_as_valid_settings(tmp_path, values):
    q = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    q.clear()
    for key, value in values.items():
        if value is not None:
            q.setValue(key, value)
    q.sync()
    s = Settings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    low, high = TIMEOUT_RANGE_MS
    assert low <= s.default_timeout_ms <= high
    assert low <= s.instrument_int("R", "timeout_ms", 5000, low, high) <= high
    assert s.virtual_mode in ("auto", "on", "off") and s.theme in ("system", "light", "dark")
    assert all(isinstance(line, str) for line in s.history("R"))
    assert isinstance(s.alias("R"), str)
    assert s.state_value("console/splitter") is None or isinstance(s.state_value("console/splitter"), QByteArray)
    assert isinstance(s.instrument_value("R", "stb_poll_ms", 100, int), int)
    assert all(isinstance(n, str) and "\n" not in n for n in s.take_notes())
