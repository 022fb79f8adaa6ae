"""``tmc-console``: start the GUI (or, with ``--smoke-test``, check that it works and exit)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

from app import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

SMOKE_TIMEOUT_S = 20.0


def _say(stream, text: str) -> None:
    # A GUI entry point on Windows may have no console: stdout/stderr can be None.
    if stream is not None:
        print(text, file=stream, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tmc-console", description="A console for USBTMC/USB488 instruments.")
    parser.add_argument("--smoke-test", action="store_true",
                        help="open the virtual SAM7 in the real window (offscreen), query *IDN?, exit 0 if it answers")
    parser.add_argument("--virtual", choices=("auto", "on", "off"),
                        help="show the virtual instruments: auto (when no hardware is found), on or off; remembered")
    parser.add_argument("--reset-settings", action="store_true", help="forget the window layout, aliases and history")
    parser.add_argument("--version", action="version", version=f"TMC Console {__version__}")
    return parser


def _no_display() -> bool:
    return (
        sys.platform.startswith("linux")
        and not os.environ.get("QT_QPA_PLATFORM")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, qt_args = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.smoke_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    elif _no_display():
        _say(sys.stderr, "tmc-console: no display found (DISPLAY is not set); run it in a desktop session, "
                         "or use the `tmc` command-line tool")
        return EXIT_USAGE

    from PySide6.QtWidgets import QApplication

    from .icon import app_icon
    from .settings import APPLICATION, ORGANIZATION

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "tmc-console", *qt_args])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("tmc-console")
    app.setWindowIcon(app_icon())
    _windows_taskbar_identity()

    if args.smoke_test:
        _quiet_platform_warnings()
        return run_smoke_test(app)

    from .main_window import MainWindow
    from .settings import Settings
    from .theme import apply_theme
    from .worker import live_threads

    settings = Settings()
    if args.reset_settings:
        settings.q.clear()
    if args.virtual:
        settings.virtual_mode = args.virtual
    apply_theme(app, settings.theme)
    # Follow the system switching between light and dark while the app runs.
    app.styleHints().colorSchemeChanged.connect(
        lambda _scheme: apply_theme(app, settings.theme) if settings.theme == "system" else None
    )
    window = MainWindow(settings)
    window.show()
    window.start()
    code = app.exec()
    if live_threads():
        # A session's worker is still inside a transfer that closing the window aborted but cannot
        # interrupt (see CLOSE_WAIT_MS). Its QThread must not be destroyed while running, so end the
        # process here: the OS cancels the transfer with the process, and the next session's device
        # clear resynchronises the instrument.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _windows_taskbar_identity() -> None:
    """Give the process its own taskbar identity on Windows, so the taskbar shows our icon, not Python's."""
    if sys.platform == "win32":
        import ctypes

        try:
            ctypes.windll.shell32.SetCurrentProcessExplicitAppUserModelID("TMCConsole.TMCConsole")
        except (AttributeError, OSError):
            pass  # older Windows: the default identity is fine


class SmokeFailure(Exception):
    """The smoke test failed; the message says where."""


def _quiet_platform_warnings() -> None:
    """Offscreen Qt warns about window-manager features it lacks; the smoke test's output stays clean."""
    from PySide6.QtCore import qInstallMessageHandler

    previous = None

    def handler(kind, context, message) -> None:
        if message.startswith("This plugin does not support"):
            return
        if previous is not None:
            previous(kind, context, message)
        else:
            _say(sys.stderr, message)

    previous = qInstallMessageHandler(handler)


def run_smoke_test(app, timeout_s: float = SMOKE_TIMEOUT_S, backend_factories=None) -> int:
    """Open the virtual SAM7 from the browser of the real window, run ``*IDN?`` through the
    console and its worker, check the answer, and close everything again."""
    from PySide6.QtCore import QSettings

    from .main_window import MainWindow
    from .settings import Settings
    from .worker import live_threads

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tmc-console-smoke-") as tmp:
        # Leave the user's settings alone.
        settings = Settings(QSettings(os.path.join(tmp, "settings.ini"), QSettings.Format.IniFormat))
        settings.virtual_mode = "on"
        window = MainWindow(settings, backend_factories=backend_factories, discovery_interval_ms=500)
        try:
            answer = _smoke_steps(window, started + timeout_s)
            failure = None
        except SmokeFailure as exc:
            failure = str(exc)
        finally:
            window.hide()
            clean = window.shutdown(timeout_ms=5000)
            window.deleteLater()
            app.processEvents()
    if failure is None and not clean:
        failure = f"threads still running after shutdown: {[t.objectName() for t in live_threads()]}"
    elapsed = time.monotonic() - started
    if failure is not None:
        _say(sys.stderr, f"tmc-console smoke test FAILED after {elapsed:.2f} s: {failure}")
        return EXIT_FAILED
    _say(sys.stdout, f"tmc-console smoke test passed in {elapsed:.2f} s: *IDN? -> {answer}")
    return EXIT_OK


def _smoke_steps(window, deadline: float) -> str:
    from PySide6.QtCore import QEvent, Qt
    from PySide6.QtGui import QKeyEvent
    from PySide6.QtWidgets import QApplication

    from .events import Reply
    from .main_window import wait_until
    from .scpi import display_text

    def wait(predicate, what: str) -> None:
        if not wait_until(predicate, max(0.0, deadline - time.monotonic())):
            raise SmokeFailure(f"timed out waiting for {what}")

    window.show()
    window.start()

    def sam7():
        for ref in window.browser.devices("virtual"):
            if "SAM7" in (window.browser.device(ref).product or ""):
                return ref
        return None

    def virtual_ready() -> bool:
        return sam7() is not None or bool(window.browser.source_error("virtual"))

    wait(virtual_ready, "the virtual SAM7 to appear in the device browser")
    if sam7() is None:
        raise SmokeFailure(f"the virtual bus is unavailable: {window.browser.source_error('virtual')}")
    ref = sam7()
    window.browser.select(ref)
    if not window.browser.activate():
        raise SmokeFailure("the browser did not accept the SAM7 for opening")
    tab = window.tab_for(ref)
    if tab is None:
        raise SmokeFailure("no tab opened for the SAM7")
    wait(lambda: tab.session.state in ("idle", "busy", "failed", "gone"), "the SAM7 session to open")
    if not tab.session.is_open:
        raise SmokeFailure(f"the SAM7 session did not open: {tab.session.last_problem}")

    replies: list[bytes] = []

    def collect(event) -> None:
        record = tab.session.record(event.command_id)
        if isinstance(event, Reply) and record is not None and record.origin == "console":
            replies.append(event.data)

    tab.session.event.connect(collect)
    console = tab.console
    wait(lambda: console.input.isEnabled(), "the console to accept input")
    console.input.setText("*IDN?")
    for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
        QApplication.sendEvent(console.input, QKeyEvent(kind, Qt.Key.Key_Return, Qt.KeyboardModifier.NoModifier))
    wait(lambda: bool(replies), "the reply to *IDN?")
    answer = display_text(replies[0])
    if "SAM7" not in answer:
        raise SmokeFailure(f"*IDN? answered {answer!r}, which does not name the SAM7")
    if not any(e.kind == "received" and "SAM7" in e.text for e in console.transcript.entries()):
        raise SmokeFailure("the reply did not reach the transcript")
    return answer


if __name__ == "__main__":
    raise SystemExit(main())
