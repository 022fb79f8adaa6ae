"""Every panel at 1024x700: the key controls are on screen, nothing is cut, and nothing moves by
itself (issue 15 item 2). The window is the real one on the virtual bus, offscreen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QAbstractScrollArea, QComboBox, QLabel, QScrollArea, QToolButton
from support.ui import find_ref, open_from_browser

SMALL = (1024, 700)


def fully_shown(widget) -> bool:
    """On screen and not clipped by a parent (a scroll area, the window's edge)."""
    if isinstance(widget, QAbstractScrollArea):  # a plot: its viewport covers it
        widget = widget.viewport()
    if not widget.isVisible():
        return False
    shown = widget.visibleRegion().boundingRect()
    return shown.size() == widget.size()


def scroll_to(widget) -> None:
    """Scroll every enclosing scroll area so ``widget`` comes into view, as a user would."""
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QScrollArea):
            parent.ensureWidgetVisible(widget, 0, 0)
        parent = parent.parentWidget()


def no_sideways_scrolling(widget) -> bool:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QAbstractScrollArea) and parent.horizontalScrollBar().maximum() > 0:
            return False  # cut off on the right, to be scrolled to sideways
        parent = parent.parentWidget()
    return True


def reachable(qtbot, widget) -> bool:
    """On screen whole, scrolling vertically if need be, never horizontally (waiting for the
    layout of a panel just shown to settle, and for the scroll to be painted)."""
    def shown() -> bool:
        scroll_to(widget)
        return no_sideways_scrolling(widget) and fully_shown(widget)

    try:
        qtbot.waitUntil(shown, timeout=2000)
    except AssertionError:
        return False
    return True


def combo_text_fits(combo: QComboBox) -> bool:
    text = combo.currentText()
    # The text area: the box less its frame and drop-down arrow (about two line heights).
    return combo.fontMetrics().horizontalAdvance(text) <= combo.width() - combo.fontMetrics().height() * 2


@pytest.fixture
def small_window(window, qtbot):
    window.resize(*SMALL)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == SMALL, timeout=2000)
    return window


def settle(win) -> None:
    """Deliver what a change posted (widgets added to a shown layout are shown by a queued call,
    then the layout requests run): a panel needing more room than the window has would make the
    window grow at this point. No waiting: only events already queued are handled."""
    from PySide6.QtCore import QCoreApplication, QEvent

    for _ in range(3):
        QCoreApplication.processEvents()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
        win.layout().activate()


def unsupported(panel) -> bool:
    notice = panel.findChild(QLabel, "waveformUnsupported")
    return notice is not None and not notice.isHidden()


def visit_every_panel(win, tab, qtbot):
    for index in range(tab.panels.count()):
        tab.panels.setCurrentIndex(index)
        panel = tab.panels.currentWidget()
        # The waveform panel is built when first shown (or says why the instrument has none).
        qtbot.waitUntil(lambda: panel.isVisible() and (getattr(panel, "built", True) or unsupported(panel)), timeout=2000)
        settle(win)
        yield tab.panels.tabText(index), tab.panels.currentWidget()


def test_nothing_widens_the_window_or_moves_the_dock(small_window, qtbot):
    """Selecting devices and opening every panel of every virtual instrument leaves the window
    at 1024x700 and the browser dock at its width."""
    win = small_window
    dock_width = win.dock.width()
    for product in ("SAM7", "Loopback", "Virtual AWG"):
        ref = find_ref(win, product, qtbot)
        win.browser.select(ref)
        settle(win)
        assert win.width() == SMALL[0], f"selecting {product} widened the window"
        tab = open_from_browser(win, qtbot, product)
        for title, panel in visit_every_panel(win, tab, qtbot):
            assert (win.width(), win.height()) == SMALL, f"{product}'s {title} panel resized the window"
            assert win.dock.width() == dock_width, f"{product}'s {title} panel moved the dock"


def test_the_console_shows_every_control_at_1024x700(small_window, qtbot):
    tab = open_from_browser(small_window, qtbot)
    console = tab.console
    for widget in (console.send_button, console.query_button, console.read_button, console.always_read,
                   console.abort_button, console.timeout_spin, console.termination_combo, console.check_combo,
                   console.input, console.state_label):
        assert fully_shown(widget), widget.objectName() or widget.text()
    for button in console.toolbar.findChildren(QToolButton):  # Device clear ... Clear view: none behind "››"
        assert fully_shown(button), button.text()
    # The error check's longest choice is never cut ("Auto (SYST:EI").
    console.check_combo.setItemText(0, "Auto (SYST:ERR?)")
    assert combo_text_fits(console.check_combo)
    # The state has room for what it usually says.
    text = "ready · errors reported by the check"
    assert console.state_label.fontMetrics().horizontalAdvance(text) <= console.state_label.width()
    # A typical command fits the history without scrolling sideways (it was cut at "PARAM:SET 1200,-3").
    history = console.history_panel.list
    assert history.fontMetrics().horizontalAdvance("PARAM:SET 1200,-35") <= history.viewport().width()


def test_the_waveform_panel_shows_upload_and_its_plots_at_1024x700(small_window, qtbot):
    tab = open_from_browser(small_window, qtbot, "Virtual AWG")
    tab.panels.setCurrentWidget(tab.waveform)
    qtbot.waitUntil(lambda: tab.waveform.built, timeout=2000)
    panel = tab.waveform.panel()
    qtbot.waitUntil(lambda: panel.plan is not None, timeout=2000)
    settle(small_window)
    assert small_window.width() == SMALL[0], "the panel made the window wider"
    for widget in (panel.upload_button, panel.cancel_button, panel.progress, panel.preview, panel.graph.plot,
                   panel.graph.log_scale, panel.graph.clear_button, panel.graph.csv_button, panel.graph.png_button):
        assert fully_shown(widget), widget.objectName() or widget.text()
    # The settings column is not overlapped by the plots and is cut off on no side.
    settings = panel.settings_scroll
    assert settings.geometry().right() < panel.splitter.widget(1).geometry().left()
    assert not settings.horizontalScrollBar().isVisible()
    for combo in (panel.source_kind, panel.shape, panel.template, panel.sample_type, panel.byte_order,
                  panel.scaling, panel.wire, panel.ingest):
        assert reachable(qtbot, combo), combo.currentText()
        assert combo_text_fits(combo), combo.currentText()


@pytest.mark.parametrize("product", ["SAM7", "Loopback"])  # its profile's names, and the IEEE 488.2 ones
def test_the_status_view_shows_its_buttons_at_1024x700(small_window, qtbot, product):
    tab = open_from_browser(small_window, qtbot, product)
    view = tab.panel("statusView")
    tab.panels.setCurrentWidget(view)
    qtbot.waitUntil(lambda: view.built, timeout=2000)
    for widget in (view.cls_button, view.read_stb_button, view.read_esr_button, *view.read_back_buttons.values(),
                   view.poll_combo, view.notify_box, view.follow_box):
        assert reachable(qtbot, widget), widget.text() if hasattr(widget, "text") else widget.objectName()
    for box in view.device_boxes.values():
        for cell in box.cells.values():
            assert reachable(qtbot, cell), cell.text()


def test_the_sam7_panel_shows_sw1_and_start_at_1024x700(small_window, qtbot):
    tab = open_from_browser(small_window, qtbot)
    qtbot.waitUntil(lambda: tab.panel("sam7Panel") is not None, timeout=2000)
    panel = tab.panel("sam7Panel")
    tab.panels.setCurrentWidget(panel)
    qtbot.waitUntil(lambda: panel.isVisible() and getattr(panel, "board_view", None) is not None, timeout=2000)
    for widget in (panel.board_view, panel.pulse_source.start_button, panel.busy_button, panel.flags_button,
                   panel.enq_button):
        assert reachable(qtbot, widget), widget.objectName()


@pytest.mark.skipif(os.environ.get("QT_SCALE_FACTOR") == "2", reason="this run is the 200 % one")
def test_every_panel_fits_at_200_percent_scaling():
    """The tests above again with Qt scaling everything by 2 (as on a 200 % display). The scale
    factor is read when the application starts, so they run in a fresh process."""
    env = dict(os.environ, QT_SCALE_FACTOR="2", QT_QPA_PLATFORM="offscreen")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                         env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_the_browser_wraps_long_values_instead_of_cutting_them(small_window, qtbot):
    """The resource string, protocol and capabilities, and the note of a group with no access,
    are shown whole in the dock at its starting width ("USB0::0x1209::0x0001::SAM…" before)."""
    win = small_window
    ref = find_ref(win, "SAM7", qtbot)
    tree = win.browser.tree
    item = win.browser._device_items[ref]
    item.setExpanded(True)
    settle(win)
    rows = {item.child(i).text(0): item.child(i) for i in range(item.childCount())}
    note = next(win.browser._groups["usb"].child(i) for i in range(win.browser._groups["usb"].childCount()))
    for row, column in ((rows["Resource"], 1), (rows["Protocol"], 1), (note, 0)):
        text = row.text(column)
        index = tree.indexFromItem(row, column)
        rect = tree.visualRect(index)
        metrics = tree.fontMetrics()
        assert metrics.horizontalAdvance(text) > rect.width(), "the test needs a value wider than its column"
        lines = rect.height() // metrics.lineSpacing()
        # Tall enough for every line the text takes at this width.
        assert lines * rect.width() >= metrics.horizontalAdvance(text) * 0.9, (text, rect)


def test_hints_in_the_console_fit_their_boxes(small_window, qtbot):
    """A narrow window shows a shorter hint, not one cut mid-word ("(Enter: sen…")."""
    tab = open_from_browser(small_window, qtbot)
    for edit in (tab.console.input, tab.console.history_panel.filter):
        text = edit.placeholderText()
        room = edit.contentsRect().width() - edit.fontMetrics().height()
        assert edit.fontMetrics().horizontalAdvance(text) <= room, text
    small_window.resize(1600, 1000)
    qtbot.waitUntil(lambda: "escapes" in tab.console.input.placeholderText(), timeout=2000)


def test_uploads_move_no_dock_and_resize_no_panel(small_window, qtbot):
    """Progress texts and a new run's legend line change inside the waveform panel: the docks and
    the panel keep their geometry across uploads. A relayout mid-upload moves the docks and
    repaints the whole window while the upload holds the interpreter lock."""
    win = small_window
    win.trace_dock.show()
    tab = open_from_browser(win, qtbot, "Virtual AWG")
    tab.panels.setCurrentWidget(tab.waveform)
    qtbot.waitUntil(lambda: tab.waveform.built, timeout=2000)
    panel = tab.waveform.panel()
    qtbot.waitUntil(lambda: panel.plan is not None and panel.upload_button.isEnabled(), timeout=5000)
    settle(win)

    def geometries():
        # The graph may move down when a result wraps onto a second line at this width; it keeps its size.
        return [w.geometry() for w in (win.dock, win.trace_dock, tab, panel)] + [panel.graph.size()]

    before = geometries()
    for run in range(4):  # each run adds a legend line
        with qtbot.waitSignal(panel.upload_finished, timeout=20000) as done:
            panel.start_upload()
        assert done.args[0] is not None
        qtbot.waitUntil(lambda: panel.upload_button.isEnabled(), timeout=5000)
        settle(win)
        after = geometries()
        assert after == before, f"upload {run + 1} moved a dock or resized the panel: {before} -> {after}"
    assert len(panel.graph.runs) == 4 and panel.graph.legend.text().count("<br>") == 4
