"""Everything TMC Console remembers, in QSettings (organization "TMC Console").

Per-instrument values (alias, history, timeout, termination) are keyed by the
instrument's VISA resource string, which holds its VID, PID and serial number, so
they follow the instrument from port to port.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QByteArray, QSettings

ORGANIZATION = "TMC Console"
APPLICATION = "TMC Console"

HISTORY_LIMIT = 500

VIRTUAL_MODES = ("auto", "on", "off")  # auto: shown when no hardware is found
THEMES = ("system", "light", "dark")
ERROR_CHECKS = ("auto", "syst_err", "esr", "off")
TERMINATIONS = {"LF (\\n)": "\n", "CR LF (\\r\\n)": "\r\n", "CR (\\r)": "\r", "none": ""}


def instrument_key(resource: str) -> str:
    """A QSettings-safe key for a resource string (QSettings treats '/' and '\\' specially)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", resource)


class Settings:
    """Typed access to the application's QSettings."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.q = qsettings if qsettings is not None else QSettings(ORGANIZATION, APPLICATION)

    def _get(self, key: str, default, kind=str):
        value = self.q.value(key, default)
        try:
            return kind(value)
        except (TypeError, ValueError):
            return default

    def _choice(self, key: str, default: str, allowed) -> str:
        value = self._get(key, default)
        return value if value in allowed else default

    # --- application-wide ---

    @property
    def virtual_mode(self) -> str:
        return self._choice("virtual/mode", "auto", VIRTUAL_MODES)

    @virtual_mode.setter
    def virtual_mode(self, mode: str) -> None:
        self.q.setValue("virtual/mode", mode)

    @property
    def virtual_quirky(self) -> bool:
        """Whether the quirky virtual instruments (one per quirk database entry) are on the virtual bus."""
        return str(self.q.value("virtual/quirky", "false")).lower() in ("true", "1")

    @virtual_quirky.setter
    def virtual_quirky(self, on: bool) -> None:
        self.q.setValue("virtual/quirky", bool(on))

    @property
    def reopen_sessions(self) -> bool:
        """Whether the instruments open at quit are opened again at the next start."""
        return str(self.q.value("session/reopen", "true")).lower() in ("true", "1")

    @reopen_sessions.setter
    def reopen_sessions(self, on: bool) -> None:
        self.q.setValue("session/reopen", bool(on))

    @property
    def open_at_quit(self) -> list[tuple[str, str]]:
        """(source, resource) of each instrument that had a session when the window closed, in tab order."""
        value = self.q.value("session/open", [])
        items = [value] if isinstance(value, str) else list(value or [])
        pairs = [str(item).split("|", 1) for item in items]
        return [(source, resource) for source, resource in (p for p in pairs if len(p) == 2) if resource]

    @open_at_quit.setter
    def open_at_quit(self, refs: list[tuple[str, str]]) -> None:
        self.q.setValue("session/open", [f"{source}|{resource}" for source, resource in refs])

    @property
    def theme(self) -> str:
        return self._choice("view/theme", "system", THEMES)

    @theme.setter
    def theme(self, theme: str) -> None:
        self.q.setValue("view/theme", theme)

    @property
    def default_timeout_ms(self) -> int:
        return max(10, self._get("session/timeout_ms", 5000, int))

    @default_timeout_ms.setter
    def default_timeout_ms(self, value: int) -> None:
        self.q.setValue("session/timeout_ms", int(value))

    @property
    def error_check(self) -> str:
        return self._choice("console/error_check", "auto", ERROR_CHECKS)

    @error_check.setter
    def error_check(self, value: str) -> None:
        self.q.setValue("console/error_check", value)

    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        geometry = self.q.value("window/geometry")
        state = self.q.value("window/state")
        return (geometry if isinstance(geometry, QByteArray) else None, state if isinstance(state, QByteArray) else None)

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self.q.setValue("window/geometry", geometry)
        self.q.setValue("window/state", state)

    def value(self, key: str, default=None):
        return self.q.value(key, default)

    def set_value(self, key: str, value) -> None:
        self.q.setValue(key, value)

    # --- per instrument ---

    def alias(self, resource: str) -> str:
        return self._get(f"aliases/{instrument_key(resource)}", "")

    def set_alias(self, resource: str, alias: str) -> None:
        key = f"aliases/{instrument_key(resource)}"
        if alias.strip():
            self.q.setValue(key, alias.strip())
        else:
            self.q.remove(key)

    def history(self, resource: str) -> list[str]:
        value = self.q.value(f"history/{instrument_key(resource)}", [])
        if isinstance(value, str):  # QSettings returns a one-element list as a plain string
            value = [value]
        return [str(item) for item in (value or [])][-HISTORY_LIMIT:]

    def set_history(self, resource: str, lines: list[str]) -> None:
        self.q.setValue(f"history/{instrument_key(resource)}", list(lines[-HISTORY_LIMIT:]))

    def instrument_value(self, resource: str, name: str, default, kind=str):
        return self._get(f"instrument/{instrument_key(resource)}/{name}", default, kind)

    def set_instrument_value(self, resource: str, name: str, value) -> None:
        self.q.setValue(f"instrument/{instrument_key(resource)}/{name}", value)

    def sync(self) -> None:
        self.q.sync()
