"""The application icon, loaded from the ``app.resources`` package.

``python -m app.ui.icon`` renders the PNG sizes from the SVG (run it after editing the SVG).
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from PySide6.QtGui import QIcon

ICON_NAME = "tmc-console"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256)


def resource_dir():
    """The folder holding the icon files: the installed ``app.resources`` package, or the
    source tree's ``resources/`` when running from a checkout."""
    try:
        return resources.files("app.resources")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "resources"


def app_icon() -> QIcon:
    """The icon with every PNG size (crisp at small sizes) and the SVG for the rest."""
    icon = QIcon()
    folder = resource_dir()
    for size in PNG_SIZES:
        png = folder.joinpath(f"{ICON_NAME}-{size}.png")
        if png.is_file():
            with resources.as_file(png) as path:
                icon.addFile(str(path))
    svg = folder.joinpath(f"{ICON_NAME}.svg")
    if icon.isNull() and svg.is_file():
        with resources.as_file(svg) as path:
            icon.addFile(str(path))
    return icon


def render_pngs(out_dir: Path) -> list[Path]:
    """Render the SVG at every size in ``PNG_SIZES`` into ``out_dir``."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(out_dir / f"{ICON_NAME}.svg"))
    written = []
    for size in PNG_SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        path = out_dir / f"{ICON_NAME}-{size}.png"
        image.save(str(path))
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in render_pngs(Path(__file__).resolve().parents[2] / "resources"):
        print(written_path)
