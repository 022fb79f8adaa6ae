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
TIMEOUT_RANGE_MS = (10, 600_000)  # what the console's timeout box offers

VIRTUAL_MODES = ("auto", "on", "off")  # auto: shown when no hardware is found
THEMES = ("system", "light", "dark")
ERROR_CHECKS = ("auto", "syst_err", "esr", "off")
TERMINATIONS = {"LF (\\n)": "\n", "CR LF (\\r\\n)": "\r\n", "CR (\\r)": "\r", "none": ""}


def _as_int(raw) -> int | None:
    """A stored whole number (QSettings' INI files give text back), or None."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        return int(raw) if raw.is_integer() else None
    if isinstance(raw, str) and re.fullmatch(r"\s*-?[0-9]{1,30}\s*", raw, re.ASCII):
        return int(raw)
    return None


def _shown(raw) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:40] + "…"


def instrument_key(resource: str) -> str:
    """A QSettings-safe key for a resource string (QSettings treats '/' and '\\' specially)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", resource)


class Settings:
    """Typed access to the application's QSettings."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.q = qsettings if qsettings is not None else QSettings(ORGANIZATION, APPLICATION)
        # Stored values that were out of range or of the wrong type, each replaced by its default:
        # one sentence per value, for the console to show (take_notes()).
        self.notes: list[str] = []

    def _get(self, key: str, default, kind=str):
        value = self.q.value(key, default)
        try:
            return kind(value)
        except (TypeError, ValueError, OverflowError):
            return default

    def note(self, what: str, raw, why: str, default) -> None:
        """Remember that a stored value was replaced by its default (said once per value)."""
        text = f"The stored {what} ({_shown(raw)}) {why}; using {default} instead."
        if text not in self.notes:
            self.notes.append(text)

    def take_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes

    def int_value(self, key: str, default: int, low: int, high: int, what: str = "") -> int:
        """A stored whole number within ``low``..``high``; anything else gives ``default`` and a note."""
        raw = self.q.value(key)
        if raw is None:
            return default
        value = _as_int(raw)
        if value is None:
            self.note(what or key, raw, "is not a whole number", default)
            return default
        if not low <= value <= high:
            self.note(what or key, raw, f"is outside {low:,} to {high:,}", default)
            return default
        return value

    def state_value(self, key: str, what: str = "") -> QByteArray | None:
        """A stored widget state (QByteArray), or None (with a note when something else is stored)."""
        raw = self.q.value(key)
        if raw is None or isinstance(raw, QByteArray):
            return raw
        self.note(what or key, raw, "is not a saved layout", "the default layout")
        return None

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
    def lan_resources(self) -> list[str]:
        """The LAN instruments the user added, by VISA resource string (docs/lan.md)."""
        value = self.q.value("lan/resources", [])
        items = [value] if isinstance(value, str) else list(value or [])
        return [str(item) for item in items if str(item).strip()]

    @lan_resources.setter
    def lan_resources(self, resources: list[str]) -> None:
        self.q.setValue("lan/resources", list(dict.fromkeys(resources)))

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
        return self.int_value("session/timeout_ms", 5000, *TIMEOUT_RANGE_MS, what="default timeout (ms)")

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
        if not isinstance(value, (list, tuple)):
            self.note("command history", value, "is not a list of lines", "an empty history")
            return []
        return [str(item) for item in value][-HISTORY_LIMIT:]

    def set_history(self, resource: str, lines: list[str]) -> None:
        self.q.setValue(f"history/{instrument_key(resource)}", list(lines[-HISTORY_LIMIT:]))

    def instrument_value(self, resource: str, name: str, default, kind=str):
        return self._get(f"instrument/{instrument_key(resource)}/{name}", default, kind)

    def instrument_int(self, resource: str, name: str, default: int, low: int, high: int, what: str = "") -> int:
        """A per-instrument whole number within ``low``..``high`` (see :meth:`int_value`)."""
        return self.int_value(f"instrument/{instrument_key(resource)}/{name}", default, low, high,
                              what=what or f"{name} of {resource}")

    def set_instrument_value(self, resource: str, name: str, value) -> None:
        self.q.setValue(f"instrument/{instrument_key(resource)}/{name}", value)

    def sync(self) -> None:
        self.q.sync()
