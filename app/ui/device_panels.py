"""Which panels an instrument tab gets beyond the console.

Every instrument gets the status-register view. Once its ``*IDN?`` is known, the device
profile (an instrument of the table in ``app/instruments/instruments.toml``) may name a demo
panel, which is added then. A panel for a virtual instrument may reach its device model through the virtual bus.
"""

from __future__ import annotations

from collections.abc import Callable

from app.session.device_profile import profile_for_idn
from app.usbtmc import parse_resource
from app.usbtmc.errors import BackendUnavailableError

from .sam7_panel import Sam7Panel
from .status_view import StatusView


def virtual_model(ref, backends, kind: type | None = None) -> Callable[[], object | None] | None:
    """For a virtual instrument, a callable returning its device model (None while unplugged).

    None for real hardware: the console cannot reach inside a real board.
    """
    if ref.source != "virtual":
        return None
    try:
        bus = getattr(backends.get(ref.source), "bus", None)
        wanted = parse_resource(ref.resource)
    except (BackendUnavailableError, KeyError, ValueError):  # no such bus, or an odd resource: no model to show
        return None
    if bus is None:
        return None

    def lookup():
        return bus.find(vid=wanted.vid, pid=wanted.pid, serial=wanted.serial, kind=kind)

    return lookup if lookup() is not None else None


def _sam7(tab, profile, backends, view, monitor):
    from app.sim.sam7 import Sam7Counter

    board = virtual_model(tab.ref, backends, Sam7Counter)
    return Sam7Panel(tab.session, tab.console, tab.settings, profile, status_view=view, monitor=monitor, board=board,
                     parent=tab), "SAM7 counter"


# A profile's ``panel`` key -> a factory returning (widget, tab title).
DEMO_PANELS = {"sam7": _sam7}


def attach_panels(tab, backends, srq_center=None) -> StatusView:
    """Add the status view to ``tab`` now and its profile's demo panel once it is identified."""
    monitor = srq_center.monitor(tab) if srq_center is not None else None
    view = StatusView(tab.session, tab.console, tab.settings, monitor=monitor, center=srq_center, parent=tab)
    tab.add_panel(view, "Status")

    def identified(idn: str) -> None:
        profile = profile_for_idn(idn)
        view.set_profile(profile)
        factory = DEMO_PANELS.get(profile.panel)
        if factory is not None and tab.panel(f"{profile.panel}Panel") is None:
            panel, title = factory(tab, profile, backends, view, monitor)
            tab.add_panel(panel, title)

    tab.console.identified.connect(identified)
    if tab.console.idn:
        identified(tab.console.idn)
    return view
