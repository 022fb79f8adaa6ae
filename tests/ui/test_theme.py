"""The forced palettes: controls stay visible on either."""

import pytest
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QCheckBox, QRadioButton, QStyle, QStyleOptionButton

from app.ui.theme import apply_theme, is_dark


@pytest.fixture
def dark(qapp):
    apply_theme(qapp, "dark")
    yield qapp
    apply_theme(qapp, "light")


def _edge_contrast(widget_type, element) -> int:
    """How far the indicator's left edge (mid-height) is from the window colour, summed over R, G, B."""
    widget = widget_type("Always read")
    widget.resize(widget.sizeHint())
    option = QStyleOptionButton()
    widget.initStyleOption(option)
    rect = widget.style().subElementRect(element, option, widget)
    image = widget.grab().toImage()
    edge = image.pixelColor(rect.left(), rect.center().y())
    window = widget.palette().color(QPalette.ColorRole.Window)  # what the box sits on
    return abs(edge.red() - window.red()) + abs(edge.green() - window.green()) + abs(edge.blue() - window.blue())


@pytest.mark.parametrize("widget_type, element", [
    (QCheckBox, QStyle.SubElement.SE_CheckBoxIndicator),
    (QRadioButton, QStyle.SubElement.SE_RadioButtonIndicator),
])
def test_an_unchecked_box_shows_its_edge_in_dark_colours(dark, widget_type, element):
    assert is_dark(QApplication.palette())
    # Fusion's own edge is the window colour made darker: 30-40 apart, a black square on grey.
    assert _edge_contrast(widget_type, element) > 90
