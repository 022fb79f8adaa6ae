"""The device browser: every USBTMC interface found, grouped by bus, with what it can do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from PySide6.QtCore import QEvent, QPoint, QRect, QSize, Qt, Signal, Slot
from PySide6.QtGui import QAction, QColor, QFont, QFontMetrics, QGuiApplication, QIcon, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.session import SessionState
from app.usbtmc.framing import Capabilities

from .discovery import Snapshot
from .doctor_view import DoctorView
from .settings import Settings
from .theme import colors, is_dark

REF_ROLE = Qt.ItemDataRole.UserRole
KIND_ROLE = Qt.ItemDataRole.UserRole + 1
TITLE_ROLE = Qt.ItemDataRole.UserRole + 2

SOURCE_TITLES = {"usb": "USB instruments", "virtual": "Virtual instruments", "lan": "LAN instruments"}
SOURCE_ORDER = {"usb": 0, "virtual": 1, "lan": 2}
LAN_PROTOCOLS = {"SOCKET": "raw SCPI socket", "VXI-11": "VXI-11 (ONC RPC)", "HiSLIP": "HiSLIP (IVI-6.1)"}
LAN_ORDER = {"HiSLIP": 0, "VXI-11": 1, "SOCKET": 2}  # an instrument's row opens its most capable connection
STATE_NOTES = {SessionState.IDLE: "open", SessionState.BUSY: "open, busy", SessionState.OPENING: "opening…"}


@dataclass(frozen=True)
class DeviceRef:
    """Which device: its source ("usb" or "virtual") and VISA resource string."""

    source: str
    resource: str


def device_title(info, alias: str = "") -> str:
    """What to call a device: its alias, else its product, else VID:PID."""
    if getattr(info, "bus", None) == "LAN":
        return alias or (f"{info.product} ({info.protocol})" if info.product else f"{info.protocol} {info.vid_pid}")
    return alias or info.product or f"USB device {info.vid:04X}:{info.pid:04X}"


def connection_label(ref: DeviceRef, info) -> str:
    """What a connection is called under its instrument: "USB", or the LAN protocol."""
    return info.protocol if getattr(info, "bus", None) == "LAN" else "USB"


def lan_port(info) -> str:
    if info.port:
        return str(info.port)
    return "from the portmapper (port 111)" if info.protocol == "VXI-11" else "(default)"


def lan_srq(info) -> str:
    return "no (poll *STB?)" if info.protocol == "SOCKET" else (
        "yes (interrupt channel)" if info.protocol == "VXI-11" else "yes (AsyncServiceRequest)")


def _connection_order(ref: DeviceRef, info) -> tuple:
    return (SOURCE_ORDER.get(ref.source, 9), LAN_ORDER.get(info.protocol, 9) if ref.source == "lan" else 0,
            ref.resource)


def group_connections(devices: dict[DeviceRef, object], visible: set[str]) -> list[list[DeviceRef]]:
    """The connections in ``devices`` folded into instruments, each a list of refs in a fixed
    order (USB first, then HiSLIP, VXI-11, raw socket; then by resource string).

    Connections join when :func:`app.lan.directory.same_instrument` says so (a known serial
    number, agreeing maker and model). An instrument has at most one USB connection (two
    interfaces with one descriptor serial are told apart), and a connection of a hidden source
    (``visible`` lacks it) stays on its own.
    """
    from app.lan.directory import same_instrument

    instruments: list[list[DeviceRef]] = []
    for ref in sorted(devices, key=lambda r: _connection_order(r, devices[r])):
        info = devices[ref]
        home = None
        if ref.source in visible:
            for conns in instruments:
                if conns[0].source not in visible or (ref.source != "lan" and any(r.source != "lan" for r in conns)):
                    continue
                if all(same_instrument(devices[r], info) for r in conns):
                    home = conns
                    break
        if home is None:
            instruments.append([ref])
        else:
            home.append(ref)
    return instruments


def capability_summary(caps: Capabilities | None) -> str:
    if caps is None:
        return "not read"
    on = [label for label, value in caps.describe() if value]
    return ", ".join(on) if on else "none optional"


class WrappingDelegate(QStyledItemDelegate):
    """Detail values (and a group's note) wrap onto more lines instead of ending in "…" in a
    narrow dock; a value with no space to break at (a resource string) breaks anywhere. The
    text itself is unchanged."""

    def __init__(self, tree: QTreeWidget) -> None:
        super().__init__(tree)
        self.tree = tree

    @staticmethod
    def _flags(text: str) -> int:
        wrap = Qt.TextFlag.TextWordWrap if " " in text else Qt.TextFlag.TextWrapAnywhere
        return int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter) | int(wrap)

    def _text_rect(self, option: QStyleOptionViewItem, index) -> QRect:
        style = option.widget.style() if option.widget is not None else self.tree.style()
        return style.subElementRect(QStyle.SubElement.SE_ItemViewItemText, option, option.widget)

    @staticmethod
    def _wraps(index) -> bool:
        """Detail values, and the note that says why a group is empty."""
        kind = index.data(KIND_ROLE)
        return index.column() == 1 or (index.column() == 0 and isinstance(kind, tuple) and kind[0] == "note")

    def _width(self, index) -> int:
        if index.column() == 1:
            return max(40, self.tree.columnWidth(1) - 8)
        icon = self.tree.style().pixelMetric(QStyle.PixelMetric.PM_SmallIconSize)
        return max(40, self.tree.viewport().width() - self.tree.indentation() * 2 - icon - 12)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index) -> None:
        if not self._wraps(index):
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        text, opt.text = opt.text, ""
        style = opt.widget.style() if opt.widget is not None else self.tree.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        painter.save()
        painter.setPen(opt.palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text))
        painter.setFont(opt.font)
        painter.drawText(self._text_rect(opt, index), self._flags(text), text)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index) -> QSize:  # noqa: N802 - Qt's name
        size = super().sizeHint(option, index)
        if not self._wraps(index) or not index.data():
            return size
        text = str(index.data())
        width = self._width(index)
        bounds = QFontMetrics(option.font).boundingRect(QRect(0, 0, width, 100000), self._flags(text), text)
        return QSize(size.width(), max(size.height(), bounds.height() + 4))


class DeviceBrowser(QWidget):
    """A tree of devices per source. Double-click or Enter asks to open one."""

    open_requested = Signal(object)  # DeviceRef
    open_without_quirks_requested = Signal(object)  # DeviceRef
    probe_requested = Signal(object)  # DeviceRef: run the compliance probe
    reset_port_requested = Signal(object)  # DeviceRef: USB port reset (replug a virtual one), then reopen
    identify_requested = Signal(object)  # DeviceRef
    alias_changed = Signal(object, str)  # DeviceRef, alias
    rescan_requested = Signal()
    selection_changed = Signal(object)  # DeviceRef | None

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._devices: dict[DeviceRef, object] = {}  # a connection's DeviceInfo or LanInfo
        # Connections of one instrument (same serial, maker and model: group_connections) are
        # listed as one entry, keyed by its first connection; a lone connection is its own entry.
        self._instruments: dict[DeviceRef, list[DeviceRef]] = {}
        self._instrument_key: dict[DeviceRef, DeviceRef] = {}  # connection -> its instrument's key
        self._instrument_items: dict[DeviceRef, QTreeWidgetItem] = {}
        self._filled: dict[DeviceRef, tuple] = {}  # what each instrument's rows were built from
        # The row of each connection: its instrument's row when alone, else its own row under it.
        self._device_items: dict[DeviceRef, QTreeWidgetItem] = {}
        self._groups: dict[str, QTreeWidgetItem] = {}
        self._errors: dict[str, str | None] = {}
        self._open_state: dict[DeviceRef, str] = {}
        self._badges: dict[DeviceRef, str] = {}
        self._scanned: set[str] = set()
        # Adds entries to the context menu: hook(menu, ref, source) with ref None off a device row
        # (the main window's virtual instrument actions: faults, unplug, replug).
        self.menu_hook: Callable[[QMenu, DeviceRef | None, str | None], None] | None = None

        self.tree = QTreeWidget(self)
        self.tree.setObjectName("deviceTree")
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Instrument", "Details"])
        self.tree.setHeaderHidden(True)
        # Group and device rows span both columns; detail rows are "label | value" with the
        # label column sized for the longest label, so values get the rest of the width.
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.tree.header().setStretchLastSection(True)
        label_width = self.fontMetrics().horizontalAdvance("Manufacturer") + self.tree.indentation() * 3 + 16
        self.tree.setColumnWidth(0, label_width)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.setAlternatingRowColors(False)
        # Long values (the resource string, protocol, capabilities) wrap in a narrow dock.
        self.tree.setUniformRowHeights(False)
        self.tree.setItemDelegate(WrappingDelegate(self.tree))
        self.tree.header().sectionResized.connect(lambda *_: self.tree.doItemsLayout())
        self.tree.viewport().installEventFilter(self)
        self.tree.setExpandsOnDoubleClick(False)  # a double-click opens the device; the arrow folds it
        self.tree.itemActivated.connect(self._on_activated)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.tree.currentItemChanged.connect(self._on_current_changed)

        self.details = QLabel(self)
        self.details.setObjectName("deviceDetails")
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setFrameShape(QFrame.Shape.StyledPanel)
        self.details.setMargin(6)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        # What of the user's quirks file was skipped (file:line and why), above the devices it affects.
        self.quirk_banner = QLabel(self)
        self.quirk_banner.setObjectName("quirkBanner")
        self.quirk_banner.setWordWrap(True)
        self.quirk_banner.setTextFormat(Qt.TextFormat.PlainText)  # file names and messages, never markup
        self.quirk_banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.quirk_banner.setMargin(6)
        self.quirk_banner.setAutoFillBackground(True)
        self.quirk_banner.hide()
        self._quirk_problems: tuple[str, ...] = ()

        # The driver doctor: shown when the selected device (or the USB bus) has a diagnosis.
        self.doctor = DoctorView(self)
        self.doctor.hide()
        self._source_diagnoses: dict[str, object] = {}

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.quirk_banner)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.details)
        layout.addWidget(self.doctor, 1)

        for source in ("usb", "virtual"):
            self._group(source)
        self._update_details()

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if watched is self.tree.viewport() and event.type() == QEvent.Type.Resize \
                and event.size().width() != event.oldSize().width():
            self.tree.doItemsLayout()  # wrapped rows take their height for the new width
        return super().eventFilter(watched, event)

    def sizeHint(self) -> QSize:
        # Wide enough for a resource string: the dock starts at this width.
        metrics = self.fontMetrics()
        return QSize(metrics.horizontalAdvance("USB0::0x1209::0x0001::SAM7-0001::INSTR") + metrics.averageCharWidth() * 16,
                     metrics.lineSpacing() * 30)

    # --- groups ---------------------------------------------------------------

    def _group(self, source: str) -> QTreeWidgetItem:
        group = self._groups.get(source)
        if group is None:
            group = QTreeWidgetItem([SOURCE_TITLES.get(source, source)])
            font = group.font(0)
            font.setBold(True)
            group.setFont(0, font)
            group.setData(0, KIND_ROLE, ("group", source))
            group.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            self.tree.addTopLevelItem(group)
            group.setFirstColumnSpanned(True)
            group.setExpanded(True)
            self._groups[source] = group
            self._set_group_note(source, "looking…")
        return group

    def set_source_visible(self, source: str, visible: bool) -> None:
        group = self._group(source)
        if group.isHidden() == (not visible):
            return
        group.setHidden(not visible)
        if not visible:
            current = self._ref_of(self.tree.currentItem())
            if current is not None and current.source == source:
                self.tree.setCurrentItem(None)
        # A hidden source's connections are not folded into instruments shown elsewhere.
        self._sync()

    def is_source_visible(self, source: str) -> bool:
        return not self._group(source).isHidden()

    def _set_group_note(self, source: str, note: str, *, problem: bool = False) -> None:
        group = self._groups[source]
        # A note child says why a group is empty; it goes when devices arrive.
        for i in reversed(range(group.childCount())):
            child = group.child(i)
            if child.data(0, KIND_ROLE) == ("note", source):
                group.removeChild(child)
        if note:
            item = QTreeWidgetItem([note])
            item.setData(0, KIND_ROLE, ("note", source))
            item.setToolTip(0, note)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
            font = item.font(0)
            font.setItalic(True)
            item.setFont(0, font)
            if problem:
                item.setIcon(0, self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation))
            group.insertChild(0, item)
            # Long notes (the "no USB access" advice) span both columns so they are not cut short.
            item.setFirstColumnSpanned(True)

    # --- snapshots ------------------------------------------------------------

    @Slot(object)
    def apply_snapshot(self, snap: Snapshot) -> None:
        """Bring one source's connections up to date, keeping selection and expansion."""
        self._scanned.add(snap.source)
        self._errors[snap.source] = snap.error
        self.set_quirk_problems(snap.quirk_problems)
        self._source_diagnoses[snap.source] = snap.diagnosis
        self._group(snap.source)
        present = {DeviceRef(snap.source, info.resource): info for info in snap.devices}
        for ref in [r for r in self._devices if r.source == snap.source and r not in present]:
            del self._devices[ref]
        self._devices.update(present)
        self._sync()

    def set_quirk_problems(self, problems) -> None:
        """Show (or hide) the banner naming what of the user's quirks file was skipped."""
        problems = tuple(problems)
        if problems == self._quirk_problems:
            return
        self._quirk_problems = problems
        if problems:
            head = "Skipped in your quirks file (the rest of it is in use):"
            self.quirk_banner.setText("\n".join([head, *problems]))
            self._style_banner()
        self.quirk_banner.setVisible(bool(problems))

    def _style_banner(self) -> None:
        palette = self.quirk_banner.palette()
        # A warning tint that keeps the window's text colour readable in either theme.
        palette.setColor(QPalette.ColorRole.Window, QColor("#4a3b10" if is_dark(self.palette()) else "#fff1cc"))
        palette.setColor(QPalette.ColorRole.WindowText, self.palette().color(QPalette.ColorRole.WindowText))
        self.quirk_banner.setPalette(palette)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and self._quirk_problems:
            self._style_banner()

    def device(self, ref: DeviceRef):
        """The latest DeviceInfo for ``ref``, or None when it is not on the bus."""
        return self._devices.get(ref)

    def devices(self, source: str | None = None) -> list[DeviceRef]:
        return [ref for ref in self._devices if source is None or ref.source == source]

    def has_scanned(self, source: str) -> bool:
        return source in self._scanned

    def source_error(self, source: str) -> str | None:
        return self._errors.get(source)

    # --- instruments and their connections ------------------------------------

    def connections(self, ref: DeviceRef) -> tuple[DeviceRef, ...]:
        """The connections of the instrument ``ref`` is one of (its first, the one a double-click
        on the instrument opens, first); () when ``ref`` is not listed."""
        key = self._instrument_key.get(ref)
        return tuple(self._instruments.get(key, ())) if key is not None else ()

    def _sync(self) -> None:
        """Fold the connections into instruments and bring the tree up to date, keeping the
        selection (on the same connection) and what is expanded."""
        selected = self.selected()
        visible = {source for source, group in self._groups.items() if not group.isHidden()}
        wanted = {conns[0]: conns for conns in group_connections(self._devices, visible)}
        for key in [k for k in self._instrument_items if k not in wanted]:
            item = self._instrument_items.pop(key)
            self._filled.pop(key, None)
            if item.parent() is not None:
                item.parent().removeChild(item)
        self._instruments = wanted
        self._instrument_key = {ref: key for key, conns in wanted.items() for ref in conns}
        self._device_items = {ref: item for ref, item in self._device_items.items() if ref in self._instrument_key}
        for key, conns in wanted.items():
            item = self._instrument_items.get(key)
            if item is None:
                item = QTreeWidgetItem()
                # In resource order wherever it arrives from, so the list reads the same on every run.
                group = self._group(key.source)
                after = [i for i in range(group.childCount())
                         if (r := group.child(i).data(0, REF_ROLE)) is not None and r.resource > key.resource]
                group.insertChild(after[0] if after else group.childCount(), item)
                item.setFirstColumnSpanned(True)
                self._instrument_items[key] = item
            signature = tuple((ref, self._devices[ref], self.settings.alias(ref.resource)) for ref in conns)
            if self._filled.get(key) != signature:
                self._filled[key] = signature
                self._fill_instrument(item, conns)
        for key in wanted:  # a second instrument of one model changes how the first is named
            self._decorate(key)
        self._fit_label_column()
        self._title_groups()
        current = self._ref_of(self.tree.currentItem())
        if selected is not None and current != selected and selected in self._device_items:
            self.select(selected)  # its row was rebuilt, or moved into another instrument
        self._update_details()

    def _title_groups(self) -> None:
        for source, group in self._groups.items():
            if source not in self._scanned:
                continue
            title = SOURCE_TITLES.get(source, source)
            error = self._errors.get(source)
            homed = sum(1 for key in self._instruments if key.source == source)
            elsewhere = [ref for ref in self._devices
                         if ref.source == source and self._instrument_key.get(ref, ref).source != source]
            if error:
                group.setText(0, f"{title}: {'no access' if source == 'usb' else 'unavailable'}")
                self._set_group_note(source, error, problem=True)
            elif homed:
                group.setText(0, f"{title} ({homed})")
                self._set_group_note(source, "")
            elif elsewhere:
                group.setText(0, title)
                homes = sorted({SOURCE_TITLES.get(self._instrument_key[r].source, "") for r in elsewhere})
                self._set_group_note(source, f"{len(elsewhere)} connection{'s' if len(elsewhere) > 1 else ''} "
                                             f"of instruments listed under {' and '.join(homes)}.")
            else:
                group.setText(0, f"{title}: none found")
                self._set_group_note(source, "No LAN instruments yet: add one by resource string "
                                             "(Device > Add LAN instrument…)." if source == "lan" else
                                     "No USBTMC instruments found. Plug one in; the list updates by itself.")

    @staticmethod
    def _row_key(row: QTreeWidgetItem) -> str:
        # A connection's row by its resource (its text carries the session state); others by label.
        kind = row.data(0, KIND_ROLE)
        ref = row.data(0, REF_ROLE)
        return ref.resource if kind and kind[0] == "connection" and isinstance(ref, DeviceRef) else row.text(0)

    @staticmethod
    def _expansion(item: QTreeWidgetItem, path: tuple = ()) -> dict[tuple, bool]:
        """What is expanded under ``item``, by the rows' texts (the rows are rebuilt on a refill)."""
        found = {}
        for i in range(item.childCount()):
            child = item.child(i)
            where = (*path, DeviceBrowser._row_key(child))
            found[where] = child.isExpanded()
            found.update(DeviceBrowser._expansion(child, where))
        return found

    @staticmethod
    def _expand(item: QTreeWidgetItem, expanded: dict[tuple, bool], path: tuple = ()) -> None:
        for i in range(item.childCount()):
            child = item.child(i)
            where = (*path, DeviceBrowser._row_key(child))
            child.setExpanded(expanded.get(where, False))
            DeviceBrowser._expand(child, expanded, where)

    def _fill_instrument(self, item: QTreeWidgetItem, conns: list[DeviceRef]) -> None:
        """One connection: its rows right under the instrument. Several: the instrument's identity
        once, then a row per connection holding that connection's own facts."""
        expanded = self._expansion(item)
        item.takeChildren()
        key = conns[0]
        item.setData(0, REF_ROLE, key)
        item.setData(0, KIND_ROLE, ("device", key.source))
        if len(conns) == 1:
            self._device_items[key] = item
            self._fill_connection(item, key, identity=True)
        else:
            alias = self._alias_of(conns)
            infos = [self._devices[ref] for ref in conns]
            if alias:
                self._row(item, key, "Alias", alias)
            for label, field in (("Manufacturer", "manufacturer"), ("Product", "product"), ("Serial", "serial")):
                self._row(item, key, label, next((v for i in infos if (v := getattr(i, field))), "") or "(not given)")
            for ref in conns:
                conn = QTreeWidgetItem([connection_label(ref, self._devices[ref]), ref.resource])
                conn.setData(0, REF_ROLE, ref)
                conn.setData(0, KIND_ROLE, ("connection", ref.source))
                conn.setToolTip(1, ref.resource)
                item.addChild(conn)
                self._device_items[ref] = conn
                self._fill_connection(conn, ref, identity=False)
        self._expand(item, expanded)

    @staticmethod
    def _row(parent: QTreeWidgetItem, ref: DeviceRef, label: str, value: str, tip: str = "") -> QTreeWidgetItem:
        child = QTreeWidgetItem([label, value])
        child.setData(0, REF_ROLE, ref)
        child.setToolTip(1, tip or value)
        parent.addChild(child)
        return child

    def _fill_connection(self, item: QTreeWidgetItem, ref: DeviceRef, *, identity: bool) -> None:
        """The rows of one connection under ``item``; ``identity``: with the resource string,
        alias, manufacturer, product and serial (an instrument with this one connection)."""
        info = self._devices[ref]

        def row(parent: QTreeWidgetItem, label: str, value: str, tip: str = "") -> QTreeWidgetItem:
            return self._row(parent, ref, label, value, tip)

        def line(parent: QTreeWidgetItem, text: str, tip: str = "") -> QTreeWidgetItem:
            # One text across both columns, for lists whose labels are long (capabilities, quirks).
            child = row(parent, text, "", tip or text)
            child.setText(1, "")
            child.setToolTip(0, tip or text)
            child.setFirstColumnSpanned(True)
            return child

        if info.problem:
            problem = row(item, "Cannot open", info.problem)
            problem.setIcon(0, self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
        elif info.diagnosis is not None:
            row(item, "Driver", info.diagnosis.summary)
        if identity:
            row(item, "Resource", info.resource)
            alias = self.settings.alias(ref.resource)
            if alias:
                row(item, "Alias", alias)
            row(item, "Manufacturer", info.manufacturer or "(not given)")
            row(item, "Product", info.product or "(not given)")
            row(item, "Serial", info.serial or "(not given)")
        if info.bus == "LAN":  # app.lan.LanInfo: no descriptors, endpoints or quirks
            self._fill_lan(item, info, row, line)
            return
        row(item, "VID:PID", f"{info.vid:04X}:{info.pid:04X}")
        row(item, "Speed", info.speed)
        caps = info.capabilities
        protocol = info.protocol
        if caps is not None:
            protocol += f" (USBTMC {Capabilities.version(caps.bcd_usbtmc)}"
            protocol += f", USB488 {Capabilities.version(caps.bcd_usb488)})" if caps.is_usb488 else ")"
        row(item, "Protocol", protocol)
        where = f"bus {info.bus}, address {info.address}" if info.bus is not None else "unknown"
        row(item, "Interface", f"{info.interface_number} ({where})")
        cap_row = row(item, "Capabilities", capability_summary(caps))
        if caps is not None:
            for label, value in caps.describe():
                line(cap_row, f"{label}: {'yes' if value else 'no'}")
        ep_row = row(item, "Endpoints", f"{len(info.endpoints)}")
        for ep in info.endpoints:
            row(ep_row, f"0x{ep.address:02X}", f"{ep.kind} {ep.direction}, {ep.max_packet_bytes} bytes per packet")
        quirk_row = row(item, "Quirks", f"{len(info.quirks)} applied" if info.quirks else "none (a compliant device)")
        for quirk in info.quirks:
            tip = f"{quirk.reason}\nSource: {quirk.source}" if quirk.source else quirk.reason
            line(quirk_row, f"{quirk.flag} = {quirk.value!r}: {quirk.reason}", tip)

    def _fill_lan(self, item: QTreeWidgetItem, info, row, line) -> None:
        row(item, "Protocol", LAN_PROTOCOLS.get(info.protocol, info.protocol))
        row(item, "Host", info.host or "(not given)")
        row(item, "Port", lan_port(info))
        row(item, "Service requests", lan_srq(info))
        serial_from = getattr(info, "serial_from", "")
        if serial_from and serial_from != "*IDN?":
            row(item, "Serial from", serial_from)
        idn = getattr(info, "idn", "")
        if idn:
            row(item, "*IDN?", idn)
        caps = info.capabilities
        cap_row = row(item, "Capabilities", capability_summary(caps) if caps is not None else "(not probed)")
        if caps is not None:
            for label, value in caps.describe():
                line(cap_row, f"{label}: {'yes' if value else 'no'}")

    def _fit_label_column(self) -> None:
        """Make the label column as wide as the longest label (capability names are deepest)."""
        metrics = self.tree.fontMetrics()
        widest = metrics.horizontalAdvance("Manufacturer") + 3 * self.tree.indentation()

        def walk(parent: QTreeWidgetItem, depth: int) -> None:
            nonlocal widest
            for i in range(parent.childCount()):
                child = parent.child(i)
                if not child.isFirstColumnSpanned():
                    widest = max(widest, metrics.horizontalAdvance(child.text(0)) + depth * self.tree.indentation())
                walk(child, depth + 1)

        walk(self.tree.invisibleRootItem(), 1)
        self.tree.setColumnWidth(0, widest + metrics.averageCharWidth() * 3)

    def _alias_of(self, conns) -> str:
        """An instrument's alias: the first of its connections' (setting one names them all)."""
        return next((a for ref in conns if (a := self.settings.alias(ref.resource))), "")

    def _state_of(self, conns) -> tuple[str, DeviceRef | None]:
        """The busiest session state among ``conns`` and whose it is."""
        order = (SessionState.BUSY, SessionState.OPENING, SessionState.IDLE)
        states = [(self._open_state[ref], ref) for ref in conns if self._open_state.get(ref)]
        states.sort(key=lambda s: order.index(s[0]) if s[0] in order else len(order))
        return states[0] if states else ("", None)

    def _decorate(self, key: DeviceRef) -> None:
        conns = self._instruments.get(key)
        item = self._instrument_items.get(key)
        if not conns or item is None:
            return
        info = self._devices[key]
        alias = self._alias_of(conns)
        state, state_ref = self._state_of(conns)
        badge = "  ".join(self._badges[ref] for ref in conns if ref in self._badges)
        if state:
            note = STATE_NOTES.get(state, state)
            if len(conns) > 1:
                note += f" ({connection_label(state_ref, self._devices[state_ref])})"
        elif info.problem:
            note = "cannot open"
        else:
            note = info.manufacturer or info.vid_pid
        if len(conns) > 1:
            lan = sum(1 for ref in conns if ref.source == "lan")
            kinds = (["USB"] if lan < len(conns) else []) + ([f"{lan} LAN" if lan > 1 else "LAN"] if lan else [])
            note += "  ·  " + " + ".join(kinds)  # "USB + 3 LAN"
        title = self._instrument_title(key, alias)
        item.setText(0, f"{self._distinct_title(key, title, alias)}  ·  {note}  {badge}".strip())
        item.setData(0, TITLE_ROLE, title)
        self._mark(item, state, info.problem)
        if len(conns) == 1:
            item.setToolTip(0, f"{info.resource}\n{info.problem or 'Double-click or press Enter to open.'}")
            return
        item.setToolTip(0, "\n".join([*(f"{connection_label(r, self._devices[r])}: {r.resource}" for r in conns),
                                      f"Double-click or press Enter to open {connection_label(key, info)}; "
                                      "a connection's own row opens that one."]))
        for ref in conns:
            conn = self._device_items.get(ref)
            if conn is None:
                continue
            conn_state = self._open_state.get(ref, "")
            extra = [STATE_NOTES.get(conn_state, conn_state)] if conn_state else []
            extra += [self._badges[ref]] if ref in self._badges else []
            conn.setText(1, "  ·  ".join([ref.resource, *extra]))
            self._mark(conn, conn_state, self._devices[ref].problem)

    def _mark(self, item: QTreeWidgetItem, state: str, problem) -> None:
        font = item.font(0)
        font.setBold(bool(state))
        item.setFont(0, font)
        icon = QIcon()
        if problem:
            icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        elif state in (SessionState.IDLE, SessionState.BUSY, SessionState.OPENING):
            icon = self.style().standardIcon(QStyle.StandardPixmap.SP_DialogYesButton)
        item.setIcon(0, icon)

    def _instrument_title(self, key: DeviceRef, alias: str) -> str:
        conns = self._instruments.get(key, [key])
        if len(conns) == 1 or alias:
            return device_title(self._devices[key], alias)
        return next((p for ref in conns if (p := self._devices[ref].product)), "") or device_title(self._devices[key])

    def _distinct_title(self, key: DeviceRef, title: str, alias: str) -> str:
        """The instrument's title, with its serial number when another instrument of the same model is listed."""
        info = self._devices[key]
        twin = any(other != key and (o := self._devices[other]).product == info.product
                   and (o.vid, o.pid) == (info.vid, info.pid) for other in self._instruments)
        return f"{title} ({info.serial or 'no serial'})" if twin and not alias else title

    def set_open_state(self, ref: DeviceRef, state: str | None) -> None:
        """Show whether ``ref`` has a session (state "idle", "busy", "opening"; None: none)."""
        if state:
            self._open_state[ref] = state
        else:
            self._open_state.pop(ref, None)
        self._decorate(self._instrument_key.get(ref, ref))
        self._update_details()

    def set_badge(self, ref: DeviceRef, text: str) -> None:
        """A short marker after the device's name (e.g. an SRQ count); "" removes it."""
        if text:
            self._badges[ref] = text
        else:
            self._badges.pop(ref, None)
        self._decorate(self._instrument_key.get(ref, ref))

    # --- selection and actions ------------------------------------------------

    @staticmethod
    def _ref_of(item: QTreeWidgetItem | None) -> DeviceRef | None:
        if item is None:
            return None
        ref = item.data(0, REF_ROLE)
        return ref if isinstance(ref, DeviceRef) else None

    def selected(self) -> DeviceRef | None:
        """The selected connection (an instrument's row stands for its first connection)."""
        return self._ref_of(self.tree.currentItem())

    def select(self, ref: DeviceRef) -> bool:
        # An instrument's first connection is selected on the instrument's row, so following the
        # active tab does not unfold the instrument; another connection on its own row.
        item = self._instrument_items.get(ref) or self._device_items.get(ref)
        if item is None:
            return False
        self.tree.setCurrentItem(item)
        self.tree.scrollToItem(item)
        return True

    def activate(self, ref: DeviceRef | None = None) -> bool:
        """Ask to open ``ref`` (default: the selected connection), as a double-click does."""
        ref = ref if ref is not None else self.selected()
        if ref is None or ref not in self._devices:
            return False
        self.open_requested.emit(ref)
        return True

    @Slot(QTreeWidgetItem, int)
    def _on_activated(self, item: QTreeWidgetItem, _column: int) -> None:
        ref = self._ref_of(item)
        if ref is not None:
            self.open_requested.emit(ref)

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def _on_current_changed(self, current, _previous) -> None:
        self._update_details()
        self.selection_changed.emit(self._ref_of(current))

    def _update_details(self) -> None:
        c = colors(self.palette())
        ref = self.selected()
        info = self._devices.get(ref) if ref else None
        self.doctor.show_diagnosis(self._diagnosis_for(ref, info))
        if info is None:
            notes = [
                f"<b>{escape(SOURCE_TITLES[s])}:</b> {escape(self._errors[s])}"
                for s in ("usb", "virtual")
                if self._errors.get(s) and not self._groups[s].isHidden()
            ]
            text = "<br>".join(notes) or "Select an instrument to see what it is; double-click it or press Enter to open it."
            self.details.setText(text)
            return
        conns = self.connections(ref) or (ref,)
        key = conns[0]
        alias = self._alias_of(conns)
        lines = [f"<b>{escape(self._instrument_title(key, alias))}</b>"]
        if len(conns) > 1:
            infos = [self._devices[r] for r in conns]
            maker = next((i.manufacturer for i in infos if i.manufacturer), "")
            serial = next((i.serial for i in infos if i.serial), "")
            lines.append(escape(" · ".join(filter(None, [maker, f"serial {serial}" if serial else ""]))))
            for r in conns:
                state = self._open_state.get(r)
                text = f"{escape(connection_label(r, self._devices[r]))}: <code>{escape(r.resource)}</code>"
                text += f" ({escape(STATE_NOTES.get(state, state))})" if state else ""
                lines.append(f"▸ <b>{text}</b>" if r == ref else f"&nbsp;&nbsp;&nbsp;{text}")
        else:
            lines.append(f"<code>{escape(info.resource)}</code>")
        if info.bus == "LAN":
            lines.append(escape(f"{LAN_PROTOCOLS.get(info.protocol, info.protocol)} on {info.host}, port "
                                f"{lan_port(info)}; service requests: {lan_srq(info)}"))
        elif len(conns) > 1:
            quirks = f"{len(info.quirks)} quirk{'s' if len(info.quirks) != 1 else ''}" if info.quirks else "no quirks"
            lines.append(escape(f"USB {info.vid_pid}, {info.protocol}, {quirks}"))
        if info.problem and info.diagnosis is None:  # the doctor below says it, with the fixes
            lines.append(f"<span style='color:{c.error}'>Cannot open: {escape(info.problem)}</span>")
        state = self._open_state.get(ref)
        over = f" over {escape(connection_label(ref, info))}" if len(conns) > 1 else ""
        if state:
            lines.append(f"Session open{over} ({escape(state)}).")
        else:
            lines.append(f"Double-click or press Enter to open a session{over}.")
        self.details.setText("<br>".join(lines))

    def _diagnosis_for(self, ref: DeviceRef | None, info):
        """The selected device's diagnosis; with none selected, the USB bus's (libusb not loadable)."""
        if info is not None:
            return info.diagnosis
        if ref is None and not self._groups["usb"].isHidden():
            return self._source_diagnoses.get("usb")
        return None

    @Slot(QPoint)
    def _context_menu(self, pos: QPoint) -> None:
        self.context_menu(self.tree.itemAt(pos)).popup(self.tree.viewport().mapToGlobal(pos))

    def context_menu(self, item: QTreeWidgetItem | None) -> QMenu:
        """The context menu of ``item`` (None: the empty area), not yet shown."""
        ref = self._ref_of(item)
        menu = QMenu(self)
        if ref is not None and ref in self._devices:
            info = self._devices[ref]
            conns = self.connections(ref)
            on_instrument = len(conns) > 1 and item is self._instrument_items.get(ref)
            label = f"Open session ({connection_label(ref, info)})" if len(conns) > 1 else "Open session"
            open_action = menu.addAction(label)
            open_action.triggered.connect(lambda: self.open_requested.emit(ref))
            font = QFont(open_action.font())
            font.setBold(True)
            open_action.setFont(font)
            if on_instrument:  # the instrument's row: its other connections too
                for other in conns[1:]:
                    action = menu.addAction(f"Open over {connection_label(other, self._devices[other])}")
                    action.setToolTip(other.resource)
                    action.triggered.connect(lambda _=False, r=other: self.open_requested.emit(r))
            if ref.source == "lan":
                self._lan_actions(menu, ref)
            else:
                self._usb_actions(menu, ref, info)
            copy = menu.addAction("Copy resource string")
            copy.triggered.connect(lambda: self.copy_resource(ref))
            alias = menu.addAction("Set alias…")
            alias.triggered.connect(lambda: self.edit_alias(ref))
            menu.addSeparator()
        if self.menu_hook is not None:
            self.menu_hook(menu, ref, self._source_of(item))
        rescan = QAction("Rescan now", menu)
        rescan.triggered.connect(self.rescan_requested)
        menu.addAction(rescan)
        menu.setToolTipsVisible(True)
        return menu

    def _usb_actions(self, menu: QMenu, ref: DeviceRef, info) -> None:
        plain = menu.addAction("Open without quirks")
        plain.setEnabled(bool(info.quirks))
        plain.setToolTip("Open as if the device were compliant, to see what its quirks work around."
                         if info.quirks else "No quirk applies to this device.")
        plain.triggered.connect(lambda: self.open_without_quirks_requested.emit(ref))
        identify = menu.addAction("Identify (indicator pulse)")
        caps = info.capabilities
        identify.setEnabled(caps is None or caps.indicator_pulse)
        if caps is not None and not caps.indicator_pulse:
            identify.setToolTip("The device does not support INDICATOR_PULSE.")
        identify.triggered.connect(lambda: self.identify_requested.emit(ref))
        probe = menu.addAction("Probe compliance…")
        probe.setToolTip("Check the device against USBTMC 1.0 / USB488 1.0 and suggest quirk flags.")
        probe.triggered.connect(lambda: self.probe_requested.emit(ref))
        reset = menu.addAction("Reset USB port")
        reset.setToolTip("For an instrument that stopped answering: reset its USB port (a virtual one is "
                         "unplugged and plugged in again), then open its session again. An open session "
                         "is closed first.")
        reset.triggered.connect(lambda: self.reset_port_requested.emit(ref))

    def _lan_actions(self, menu: QMenu, ref: DeviceRef) -> None:
        forget = menu.addAction("Forget this LAN instrument")
        remembered = ref.resource in self.settings.lan_resources
        forget.setEnabled(remembered)
        forget.setToolTip("Take it off the list of LAN instruments added by resource string." if remembered else
                          "Not added by hand: it is listed while discovery or the virtual instruments find it.")
        forget.triggered.connect(lambda: self.forget_lan(ref))

    def forget_lan(self, ref: DeviceRef) -> bool:
        """Take a LAN instrument added by resource string off the remembered list (an open session
        stays open); it goes from the list at the rescan this asks for. False if it was not remembered."""
        remembered = self.settings.lan_resources
        if ref.resource not in remembered:
            return False
        self.settings.lan_resources = [r for r in remembered if r != ref.resource]
        self.rescan_requested.emit()
        return True

    def _source_of(self, item: QTreeWidgetItem | None) -> str | None:
        """The source a row's connection comes from (a LAN connection of a virtual instrument is
        "lan"); for a group or a note, the group's."""
        ref = self._ref_of(item)
        if ref is not None:
            return ref.source
        while item is not None and item.parent() is not None:
            item = item.parent()
        return next((source for source, group in self._groups.items() if group is item), None)

    def copy_resource(self, ref: DeviceRef) -> None:
        QGuiApplication.clipboard().setText(ref.resource)

    def edit_alias(self, ref: DeviceRef) -> None:
        current = self._alias_of(self.connections(ref) or (ref,))
        text, ok = QInputDialog.getText(
            self, "Set alias", f"A name for {ref.resource}\n(empty to remove the alias):", text=current
        )
        if ok:
            self.set_alias(ref, text)

    def set_alias(self, ref: DeviceRef, alias: str) -> None:
        """Name the instrument ``ref`` reaches: every one of its connections takes the alias."""
        conns = self.connections(ref) or (ref,)
        for conn in conns:
            self.settings.set_alias(conn.resource, alias)
        self._sync()
        for conn in conns:  # each open tab of the instrument takes the name
            self.alias_changed.emit(conn, alias.strip())
