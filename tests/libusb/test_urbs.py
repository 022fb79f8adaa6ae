"""usbdevfs semantics of the umockdev adapter's URB engine, against a small virtual device in-process.

No umockdev needed: these run everywhere and pin down the kernel rules libusb relies on.
"""

import errno

import pytest

from app.sim.device import (
    TRANSFER_TYPE_BULK,
    TRANSFER_TYPE_INTERRUPT,
    ConfigDesc,
    DeviceDesc,
    EndpointDesc,
    InterfaceDesc,
    NoData,
    Speed,
    VirtualDevice,
)
from app.sim.umockdev.urbs import Urb, UrbEngine, UsbdevfsError
from app.sim.umockdev.usbdevfs import SETUP, UrbFlag, UrbType

OUT, IN, INTR = 0x01, 0x81, 0x82


class Echo(VirtualDevice):
    """Bulk-OUT data comes back on Bulk-IN; ``full`` makes Bulk-OUT NAK."""

    def __init__(self) -> None:
        interface = InterfaceDesc(0, 0, 0xFF, 0, 0, (
            EndpointDesc(OUT, TRANSFER_TYPE_BULK, 64),
            EndpointDesc(IN, TRANSFER_TYPE_BULK, 64),
            EndpointDesc(INTR, TRANSFER_TYPE_INTERRUPT, 8, interval=10),
        ))
        super().__init__(
            device_desc=DeviceDesc(0x0200, 0, 0, 0, 64, 0x1209, 0x7FFF, 0x0100, 1, 2, 3, 1),
            configs=[ConfigDesc(1, (interface,))], strings={1: "Test", 2: "Echo", 3: "E-1"}, speed=Speed.FULL,
        )
        self.full = False

    def handle_bulk_out(self, ep, data):
        if self.full:
            raise NoData("no room")
        self.in_pipes[IN].send(bytes(data), end=True)
        return len(data)


@pytest.fixture
def device():
    dev = Echo()
    dev.plug()
    dev.set_configuration(1)
    return dev


@pytest.fixture
def engine(device):
    return UrbEngine(device)


def bulk(owner, endpoint, length=64, data=b"", token=None, urb_type=UrbType.BULK, flags=0):
    return Urb(owner=owner, token=token if token is not None else object(), type=urb_type, endpoint=endpoint,
               flags=flags, length=length if endpoint & 0x80 else len(data), out_data=data)


def control_in(owner, request_type, request, value, index, length):
    return Urb(owner=owner, token=object(), type=UrbType.CONTROL, endpoint=0, flags=0, length=length,
               setup=SETUP.pack(request_type, request, value, index, length))


def test_a_bulk_in_waits_for_data_and_completes_in_order(engine):
    first, second = bulk("fd", IN), bulk("fd", IN)
    engine.submit(first)
    engine.submit(second)
    assert engine.reap("fd") is None and engine.in_flight("fd")
    engine.submit(bulk("fd", OUT, data=b"one"))
    engine.submit(bulk("fd", OUT, data=b"two"))
    reaped = [engine.reap("fd") for _ in range(4)]
    ins = [u for u in reaped if u.endpoint == IN]
    assert [u.in_data for u in ins] == [b"one", b"two"] and ins[0] is first
    assert all(u.status == 0 for u in reaped)
    assert engine.reap("fd") is None and not engine.in_flight("fd")


def test_urbs_are_reaped_only_by_the_descriptor_that_submitted_them(engine):
    engine.submit(bulk("a", OUT, data=b"x"))
    assert engine.reap("b") is None
    assert engine.reap("a").actual_length == 1


def test_discard_completes_with_enoent_and_keeps_the_bytes_already_received(engine, device):
    token = object()
    urb = bulk("fd", IN, length=256, token=token)
    engine.submit(urb)
    device.in_pipes[IN].send(b"p" * 64, end=False)  # one full packet, transfer not ended
    assert engine.reap("fd") is None
    engine.discard("fd", lambda t: t is token)
    done = engine.reap("fd")
    assert done is urb and done.status == -errno.ENOENT and done.in_data == b"p" * 64
    with pytest.raises(UsbdevfsError) as exc:
        engine.discard("fd", lambda t: t is token)
    assert exc.value.errno == errno.EINVAL
    assert engine.stats()["discarded"] == 1


def test_a_nakked_out_transfer_completes_when_the_device_has_room(engine, device):
    device.full = True
    engine.submit(bulk("fd", OUT, data=b"later"))
    assert engine.reap("fd") is None
    device.full = False
    assert engine.reap("fd").actual_length == 5


def test_a_halted_endpoint_stalls_until_clear_halt(engine, device):
    device.halt(OUT)
    engine.submit(bulk("fd", OUT, data=b"x"))
    assert engine.reap("fd").status == -errno.EPIPE
    engine.clear_halt(OUT)
    engine.submit(bulk("fd", OUT, data=b"x"))
    assert engine.reap("fd").status == 0


def test_babble_is_eoverflow_with_what_fitted(engine, device):
    engine.submit(bulk("fd", IN, length=10))
    engine.submit(bulk("fd", OUT, data=b"z" * 20))
    reaped = [engine.reap("fd"), engine.reap("fd")]
    babble = next(u for u in reaped if u.endpoint == IN)
    assert babble.status == -errno.EOVERFLOW and babble.in_data == b"z" * 10


def test_short_not_ok_turns_a_short_transfer_into_eremoteio(engine):
    engine.submit(bulk("fd", OUT, data=b"abc"))
    engine.submit(bulk("fd", IN, length=64, flags=UrbFlag.SHORT_NOT_OK))
    reaped = [engine.reap("fd"), engine.reap("fd")]
    assert next(u for u in reaped if u.endpoint == IN).status == -errno.EREMOTEIO


def test_endpoints_are_checked_like_the_kernel_does(engine):
    with pytest.raises(UsbdevfsError) as exc:
        engine.submit(bulk("fd", 0x85))
    assert exc.value.errno == errno.ENOENT
    with pytest.raises(UsbdevfsError) as exc:
        engine.submit(bulk("fd", IN, urb_type=UrbType.INTERRUPT))
    assert exc.value.errno == errno.EINVAL
    urb = bulk("fd", INTR, length=8)  # a bulk URB on an interrupt endpoint runs as interrupt
    engine.submit(urb)
    assert urb.type == UrbType.INTERRUPT


def test_control_in_answers_string_descriptors(engine):
    engine.submit(control_in("fd", 0x80, 6, 0x0302, 0x0409, 255))
    urb = engine.reap("fd")
    assert urb.in_data.decode("utf-16-le", errors="ignore").endswith("Echo") and urb.actual_length == len(urb.in_data)


def test_closing_the_descriptor_cancels_its_urbs_and_releases_its_claims(engine, device):
    engine.claim("a", 0)
    engine.submit(bulk("a", IN))
    engine.forget("a")
    engine.submit(bulk("b", OUT, data=b"for b"))
    engine.submit(bulk("b", IN))
    got = [engine.reap("b"), engine.reap("b")]
    assert next(u for u in got if u.endpoint == IN).in_data == b"for b"  # not eaten by a's old URB


def test_a_claim_held_by_a_vanished_descriptor_is_taken_over_with_its_urbs(engine, device):
    # umockdev may not report a process killed inside an ioctl: its descriptor looks alive.
    engine.claim("killed", 0)
    engine.submit(bulk("killed", IN))
    engine.claim("next", 0)
    assert not engine.in_flight("killed")
    engine.submit(bulk("next", OUT, data=b"mine"))
    engine.submit(bulk("next", IN))
    got = [engine.reap("next"), engine.reap("next")]
    assert next(u for u in got if u.endpoint == IN).in_data == b"mine"
    with pytest.raises(UsbdevfsError) as exc:
        engine.release("killed", 0)
    assert exc.value.errno == errno.EINVAL


def test_after_a_disconnect_queued_urbs_reap_as_eshutdown_then_everything_is_enodev(engine, device):
    engine.submit(bulk("fd", IN))
    device.unplug()
    engine.disconnect()
    assert engine.reap("fd").status == -errno.ESHUTDOWN
    for action in (lambda: engine.reap("fd"), lambda: engine.submit(bulk("fd", OUT, data=b"x")),
                   lambda: engine.claim("fd", 0)):
        with pytest.raises(UsbdevfsError) as exc:
            action()
        assert exc.value.errno == errno.ENODEV


def test_a_device_that_vanishes_mid_transfer_ends_it_with_eshutdown(engine, device):
    engine.submit(bulk("fd", IN))
    device.unplug()  # the device model says Gone on the next attempt
    assert engine.reap("fd").status == -errno.ESHUTDOWN
    assert engine.gone


def test_set_configuration_through_ep0_is_reported_like_the_ioctl(device):
    seen = []
    engine = UrbEngine(device, on_configuration=seen.append)
    engine.set_configuration(1)
    urb = Urb(owner="fd", token=object(), type=UrbType.CONTROL, endpoint=0, flags=0, length=0,
              setup=SETUP.pack(0x00, 9, 1, 0, 0))
    engine.submit(urb)
    assert engine.reap("fd").status == 0 and seen == [1, 1]


def test_an_exception_in_the_model_is_a_stall_and_the_queue_moves_on(engine, device):
    device.handle_bulk_out = lambda ep, data: 1 // 0  # a bug in the model
    engine.submit(bulk("fd", OUT, data=b"x"))
    assert engine.reap("fd").status == -errno.EPIPE  # not left queued: libusb would abort the client
    assert "ZeroDivisionError" in device.crashes[0]
    engine.clear_halt(OUT)
    del device.handle_bulk_out
    engine.submit(bulk("fd", OUT, data=b"x"))
    assert engine.reap("fd").status == 0


def test_an_exception_outside_the_model_completes_the_urb_with_eproto(engine, device):
    def broken(ep, data, toggles=None):
        raise KeyError("a bug in the adapter")

    device.bulk_out = broken
    engine.submit(bulk("fd", OUT, data=b"x"))
    assert engine.reap("fd").status == -errno.EPROTO
    del device.bulk_out
    engine.submit(bulk("fd", OUT, data=b"x"))
    assert engine.reap("fd").status == 0


def test_the_engine_keeps_the_hosts_data_toggles(device):
    engine = UrbEngine(device, data_toggles=True)
    engine.submit(bulk("fd", OUT, data=b"a"))  # one packet: both sides at DATA1
    engine.reap("fd")
    engine.control(SETUP.pack(0x02, 0x01, 0, OUT, 0))  # CLEAR_FEATURE by hand: the device alone to DATA0
    engine.submit(bulk("fd", OUT, data=b"b"))
    assert engine.reap("fd").status == 0  # acknowledged, yet dropped as a retransmission
    assert device.toggle_drops == 1 and device.in_pipes[IN].queued_bytes == 1  # only "a" came through
    engine.submit(bulk("fd", OUT, data=b"c"))
    engine.reap("fd")
    engine.clear_halt(OUT)  # USBDEVFS_CLEAR_HALT: both sides
    engine.submit(bulk("fd", OUT, data=b"d"))
    engine.reap("fd")
    assert device.toggle_drops == 1
    assert device.in_pipes[IN].queued_bytes == 3  # "c" and "d" arrived
