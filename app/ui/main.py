"""``tmc-console``: start the GUI (or, with ``--smoke-test``, check that it works and exit)."""

from __future__ import annotations

import argparse
import json
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
                        help="check this build: bundled libusb, the virtual SAM7 (*IDN?, status byte) and AWG (one waveform chunk) in the real window, offscreen; prints one JSON line, exits 0 only if all passed")
    parser.add_argument("--smoke-report", metavar="FILE",
                        help="with --smoke-test: also write its JSON line to FILE (a windowed program may have no stdout)")
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
        return run_smoke_test(app, report_path=args.smoke_report)

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


def run_smoke_test(app, timeout_s: float = SMOKE_TIMEOUT_S, backend_factories=None, libusb_check=None,
                   report_path: str | None = None) -> int:
    """Check that this build works, end to end, and print one JSON line saying what was found.

    Loads libusb the way the app does and checks it is the bundled one; opens the virtual
    SAM7 from the browser of the real window (offscreen), runs ``*IDN?`` through the console
    and its worker and READ_STATUS_BYTE (USB488 4.3.1); opens the virtual AWG and uploads one
    waveform chunk, then asks the AWG how many points it stored. Exit status 0 only when
    every step passed. ``libusb_check`` replaces the libusb step (tests); ``report_path``
    receives the JSON line as well.
    """
    from PySide6.QtCore import QSettings

    from .main_window import MainWindow
    from .settings import Settings
    from .worker import live_threads

    started = time.monotonic()
    report: dict[str, object] = {"smoke_test": "failed", "frozen": bool(getattr(sys, "frozen", False))}
    report.update(_platform_facts())
    failure = None
    clean = True
    try:
        report.update((libusb_check or check_bundled_libusb)())
    except SmokeFailure as exc:
        failure = str(exc)
    if failure is None:
        try:
            report.update(check_resources())
        except SmokeFailure as exc:
            failure = str(exc)
    if failure is None:
        with tempfile.TemporaryDirectory(prefix="tmc-console-smoke-") as tmp:
            # Leave the user's settings alone.
            settings = Settings(QSettings(os.path.join(tmp, "settings.ini"), QSettings.Format.IniFormat))
            settings.virtual_mode = "on"
            window = MainWindow(settings, backend_factories=backend_factories, discovery_interval_ms=500)
            try:
                report.update(_smoke_steps(window, started + timeout_s))
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
    report["elapsed_s"] = round(elapsed, 3)
    if failure is not None:
        report["error"] = failure
    else:
        report["smoke_test"] = "passed"
    line = json.dumps(report)
    _say(sys.stdout, line)
    if report_path:
        with open(report_path, "w", encoding="utf-8") as out:
            out.write(line + "\n")
    if failure is not None:
        _say(sys.stderr, f"tmc-console smoke test FAILED after {elapsed:.2f} s: {failure}")
        return EXIT_FAILED
    return EXIT_OK


def _platform_facts() -> dict[str, str]:
    import platform

    from PySide6 import __version__ as pyside_version
    from PySide6.QtCore import qVersion

    os_build = platform.platform()
    if sys.platform == "win32":
        os_build = f"Windows {platform.release()} build {sys.getwindowsversion().build}"
    return {"qt": qVersion(), "pyside6": pyside_version, "python": platform.python_version(), "os": os_build}


def check_bundled_libusb() -> dict[str, str]:
    """Load libusb as the app does and check it is the copy that ships with the app
    (inside the bundle when frozen, libusb-package's otherwise)."""
    from app.usbtmc import default_backend
    from app.usbtmc.errors import BackendUnavailableError
    from app.usbtmc.libusb_library import bundle_dir, bundled_library_path, describe

    try:
        backend = default_backend()
    except BackendUnavailableError as exc:
        raise SmokeFailure(f"libusb did not load: {exc}") from exc
    loaded = describe(backend.lib)
    facts = {"libusb_path": loaded.path, "libusb_version": loaded.version}
    bundle = bundle_dir()
    if bundle is not None and not loaded.inside(bundle):
        raise SmokeFailure(f"libusb was loaded from {loaded.path}, outside the bundle {bundle}")
    expected = bundled_library_path()
    if bundle is None and expected is not None and os.path.realpath(loaded.path) != os.path.realpath(expected):
        raise SmokeFailure(f"libusb was loaded from {loaded.path}, not the one libusb-package ships ({expected})")
    return facts


def check_resources() -> dict[str, int]:
    """The icon and the Help pages are in this build."""
    from .docs_viewer import pages
    from .icon import app_icon

    if app_icon().isNull():
        raise SmokeFailure("the application icon is missing from this build")
    try:
        found = pages()
    except OSError as exc:
        raise SmokeFailure(f"the documentation for Help cannot be read: {exc}") from exc
    if not found:
        raise SmokeFailure("the documentation for Help is missing from this build")
    return {"help_pages": len(found)}


SMOKE_WAVEFORM_POINTS = 4096


def _smoke_steps(window, deadline: float) -> dict[str, object]:
    from PySide6.QtCore import QEvent, Qt
    from PySide6.QtGui import QKeyEvent
    from PySide6.QtWidgets import QApplication

    from app.session import Origin, SessionState
    from app.session.events import Control, Failed, Query, Reply, Sent, StatusByte, WriteStream
    from app.session.scpi import display_text
    from app.waveforms import block_header

    from .main_window import wait_until

    def wait(predicate, what: str) -> None:
        if not wait_until(predicate, max(0.0, deadline - time.monotonic())):
            raise SmokeFailure(f"timed out waiting for {what}")

    window.show()
    window.start()

    def virtual(product: str):
        for ref in window.browser.devices("virtual"):
            if product in (window.browser.device(ref).product or ""):
                return ref
        return None

    def virtual_ready() -> bool:
        return virtual("SAM7") is not None or bool(window.browser.source_error("virtual"))

    def open_tab(product: str):
        ref = virtual(product)
        if ref is None:
            raise SmokeFailure(f"the virtual {product} is not in the device browser")
        window.browser.select(ref)
        if not window.browser.activate():
            raise SmokeFailure(f"the browser did not accept the {product} for opening")
        tab = window.tab_for(ref)
        if tab is None:
            raise SmokeFailure(f"no tab opened for the {product}")
        opened = (SessionState.IDLE, SessionState.BUSY, SessionState.FAILED, SessionState.GONE)
        wait(lambda: tab.session.state in opened, f"the {product} session to open")
        if not tab.session.is_open:
            raise SmokeFailure(f"the {product} session did not open: {tab.session.last_problem}")
        return tab

    def run(tab, command, wanted: type, what: str):
        """Submit ``command`` to the tab's worker and wait for its ``wanted`` event (or its failure)."""
        got: list = []
        ids: list[int] = []

        def collect(event) -> None:
            if event.command_id in ids and isinstance(event, (wanted, Failed)):
                got.append(event)

        tab.session.event.connect(collect)
        try:
            ids.append(tab.session.submit(command, origin=Origin.SMOKE_TEST))
            if not ids[0]:
                raise SmokeFailure(f"{what}: the session no longer takes commands")
            wait(lambda: bool(got), what)
        finally:
            tab.session.event.disconnect(collect)
        if isinstance(got[0], Failed):
            raise SmokeFailure(f"{what} failed: {got[0].message}")
        return got[0]

    wait(virtual_ready, "the virtual SAM7 to appear in the device browser")
    if virtual("SAM7") is None:
        raise SmokeFailure(f"the virtual bus is unavailable: {window.browser.source_error('virtual')}")
    tab = open_tab("SAM7")

    replies: list[bytes] = []

    def collect(event) -> None:
        record = tab.session.record(event.command_id)
        if isinstance(event, Reply) and record is not None and record.origin == Origin.CONSOLE:
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
        raise SmokeFailure("the reply to *IDN? did not reach the transcript")
    stb = run(tab, Control(action="read_stb"), StatusByte, "READ_STATUS_BYTE from the SAM7").value

    awg = open_tab("AWG")
    # One chunk of DAC codes, a ramp, as DATA:ARB:DAC's definite block (IEEE 488.2 8.7.9).
    samples = b"".join(((i * 16) - 32767).to_bytes(2, "little", signed=True) for i in range(SMOKE_WAVEFORM_POINTS))
    head = b"DATA:ARB:DAC SMOKE," + block_header(len(samples))
    pieces = (head, samples, b"\n")
    run(awg, WriteStream(pieces=pieces, total_bytes=sum(len(p) for p in pieces), label="smoke-test chunk"), Sent,
        "the waveform chunk to the AWG")
    reply = run(awg, Query(data=b"DATA:ATTR:POIN? SMOKE\n"), Reply, "DATA:ATTR:POIN? from the AWG")
    points = display_text(reply.data).strip()
    if points != str(SMOKE_WAVEFORM_POINTS):
        raise SmokeFailure(f"the AWG stored {points!r} points of the chunk, not {SMOKE_WAVEFORM_POINTS}")
    return {"idn": answer, "stb": stb, "awg_points": SMOKE_WAVEFORM_POINTS}


if __name__ == "__main__":
    raise SystemExit(main())
