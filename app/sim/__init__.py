"""Virtual instruments: the device side of USB, served to hosts through adapters.

- :mod:`app.sim.device`: the USB device model (descriptors, endpoint 0, packets).
- :mod:`app.sim.usbtmc_device`: a generic USBTMC/USB488 device function and the
  IEEE 488.2 status model.
- :mod:`app.sim.sam7`: the SAM7 counter board (VID 0x1209, PID 0x0001).
- :mod:`app.sim.scpi_device`: a SCPI instrument base and the virtual loopback
  (VID 0x1209, PID 0x0002).
- :mod:`app.sim.awg`: the arbitrary waveform generator (VID 0x1209, PID 0x000C);
  :mod:`app.sim.wire` paces Bulk-OUT like a USB bus or a slow instrument.
- :mod:`app.sim.bus`: a virtual bus; :mod:`app.sim.pyusb_backend`: the pyusb adapter.

Everything but the pyusb adapter uses the standard library only, so the device models
also run under the system Python (the umockdev adapter); this package imports pyusb
only inside :func:`backend`.
"""

from __future__ import annotations

from .bus import BusEntry, VirtualBus
from .clock import Clock, ManualClock, MonotonicClock

__all__ = ["BusEntry", "Clock", "ManualClock", "MonotonicClock", "VirtualBus", "backend", "default_bus",
           "default_devices", "quirky_devices"]


def default_devices(clock: Clock | None = None) -> list:
    """New instances of the default virtual instruments: the SAM7 counter, the loopback and the AWG."""
    from .awg import VirtualAwg
    from .sam7 import Sam7Counter
    from .scpi_device import VirtualLoopback

    return [Sam7Counter(clock=clock), VirtualLoopback(clock=clock), VirtualAwg(clock=clock)]


def quirky_devices(clock: Clock | None = None) -> list:
    """New instances of the quirky instruments (:mod:`app.sim.quirky`): one per reported
    misbehaviour, under the real vendors' VID:PID so the shipped quirk entries match."""
    from .quirky import quirky_devices as build

    return build(clock)


def default_bus(clock: Clock | None = None, *, quirky: bool = False) -> VirtualBus:
    """A new virtual bus with the default instruments plugged in (each call is a separate bus).

    ``quirky`` adds the quirky instruments (:data:`app.sim.quirky.CATALOGUE` describes them).
    """
    bus = VirtualBus()
    for device in default_devices(clock):
        bus.plug(device)
    if quirky:
        from .quirky import plug_quirky

        plug_quirky(bus, clock)  # the instruments that re-enumerate need to know their bus
    return bus


def backend(bus: VirtualBus | None = None):
    """A pyusb backend for ``bus`` (default: a new :func:`default_bus`).

    ``usb.core.find(backend=app.sim.backend())`` finds the virtual instruments; the
    backend's ``bus`` attribute reaches the device models (to press SW1, unplug...).
    """
    from .pyusb_backend import VirtualBackend

    return VirtualBackend(bus if bus is not None else default_bus())
