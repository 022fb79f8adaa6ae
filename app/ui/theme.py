"""Light and dark palettes, and colours that read well on either."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPalette
from PySide6.QtWidgets import QApplication, QProxyStyle, QStyle, QStyleFactory

_original: dict[str, object] = {}


def is_dark(palette: QPalette | None = None) -> bool:
    palette = palette if palette is not None else QGuiApplication.palette()
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


@dataclass(frozen=True)
class Colors:
    sent: str
    received: str
    error: str
    warning: str
    info: str
    muted: str
    link: str
    ok: str


_LIGHT = Colors(
    sent="#1a56b0", received="#19703a", error="#b3261e", warning="#8a5300", info="#5b3fa0", muted="#6b6f76",
    link="#1a56b0", ok="#19703a",
)
_DARK = Colors(
    sent="#8ab4f8", received="#81c995", error="#f28b82", warning="#fdd663", info="#c5a8ff", muted="#9aa0a6",
    link="#8ab4f8", ok="#81c995",
)


def colors(palette: QPalette | None = None) -> Colors:
    """Transcript and status colours with enough contrast on the current palette."""
    return _DARK if is_dark(palette) else _LIGHT


def _palette(dark: bool) -> QPalette:
    p = QPalette()
    if dark:
        roles = {
            QPalette.ColorRole.Window: "#2b2d31", QPalette.ColorRole.WindowText: "#e8e8e8",
            QPalette.ColorRole.Base: "#1e1f22", QPalette.ColorRole.AlternateBase: "#26282c",
            QPalette.ColorRole.ToolTipBase: "#3a3d42", QPalette.ColorRole.ToolTipText: "#e8e8e8",
            QPalette.ColorRole.PlaceholderText: "#8b8f96", QPalette.ColorRole.Text: "#e8e8e8",
            QPalette.ColorRole.Button: "#35373c", QPalette.ColorRole.ButtonText: "#e8e8e8",
            QPalette.ColorRole.BrightText: "#ff8a80", QPalette.ColorRole.Link: "#8ab4f8",
            QPalette.ColorRole.Highlight: "#3d6fb4", QPalette.ColorRole.HighlightedText: "#ffffff",
            QPalette.ColorRole.Light: "#45484e", QPalette.ColorRole.Midlight: "#3a3d42",
            QPalette.ColorRole.Mid: "#2f3136", QPalette.ColorRole.Dark: "#1a1b1e", QPalette.ColorRole.Shadow: "#000000",
        }
        disabled = "#7c8087"
    else:
        roles = {
            QPalette.ColorRole.Window: "#efefef", QPalette.ColorRole.WindowText: "#1c1c1c",
            QPalette.ColorRole.Base: "#ffffff", QPalette.ColorRole.AlternateBase: "#f5f5f5",
            QPalette.ColorRole.ToolTipBase: "#ffffdc", QPalette.ColorRole.ToolTipText: "#1c1c1c",
            QPalette.ColorRole.PlaceholderText: "#80848a", QPalette.ColorRole.Text: "#1c1c1c",
            QPalette.ColorRole.Button: "#e8e8e8", QPalette.ColorRole.ButtonText: "#1c1c1c",
            QPalette.ColorRole.BrightText: "#ffffff", QPalette.ColorRole.Link: "#1a56b0",
            QPalette.ColorRole.Highlight: "#2f6fc9", QPalette.ColorRole.HighlightedText: "#ffffff",
            QPalette.ColorRole.Light: "#ffffff", QPalette.ColorRole.Midlight: "#e3e3e3",
            QPalette.ColorRole.Mid: "#b8b8b8", QPalette.ColorRole.Dark: "#9f9f9f", QPalette.ColorRole.Shadow: "#767676",
        }
        disabled = "#9a9a9a"
    for role, value in roles.items():
        p.setColor(role, QColor(value))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(disabled))
    return p


class FramedIndicators(QProxyStyle):
    """Fusion, with check boxes and radio buttons that show their edge on a dark palette.

    Fusion outlines them in the window colour made darker, which on a dark window is a
    black square on dark grey: an unchecked box could not be told from the background.
    """

    def drawPrimitive(self, element, option, painter, widget=None) -> None:  # noqa: N802 - Qt's name
        super().drawPrimitive(element, option, painter, widget)
        if element not in (QStyle.PrimitiveElement.PE_IndicatorCheckBox,
                           QStyle.PrimitiveElement.PE_IndicatorRadioButton) or not is_dark(option.palette):
            return
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(option.palette.color(QPalette.ColorRole.PlaceholderText))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        rect = option.rect.adjusted(1, 1, -1, -1) if element == QStyle.PrimitiveElement.PE_IndicatorRadioButton \
            else option.rect.adjusted(0, 0, -1, -1)
        if element == QStyle.PrimitiveElement.PE_IndicatorRadioButton:
            painter.drawEllipse(rect)
        else:
            painter.drawRect(rect)
        painter.restore()


def apply_theme(app: QApplication, theme: str) -> None:
    """"system" follows the platform (including its dark mode); "light"/"dark" force a palette.

    Forced palettes use the Fusion style, which honours every palette role on
    every platform.
    """
    if "style" not in _original:
        _original["style"] = app.style().name()
    hints = app.styleHints()
    if theme == "system":
        if hasattr(hints, "unsetColorScheme"):
            hints.unsetColorScheme()
        style = str(_original["style"])
        if style.lower() == "windowsvista" and hints.colorScheme() == Qt.ColorScheme.Dark:
            style = "Fusion"  # the Windows Vista style draws light whatever the system says; Fusion follows it
        if app.style().name().lower() != style.lower():
            app.setStyle(QStyleFactory.create(style) or app.style())
        app.setPalette(QPalette())  # an empty palette: back to the platform's own (light or dark)
        return
    dark = theme == "dark"
    if hasattr(hints, "setColorScheme"):
        hints.setColorScheme(Qt.ColorScheme.Dark if dark else Qt.ColorScheme.Light)
    app.setStyle(FramedIndicators(QStyleFactory.create("Fusion")))
    app.setPalette(_palette(dark))
