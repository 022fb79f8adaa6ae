"""Descriptors on the wire (USB 2.0 chapter 9) and the pyusb adapter's view of them."""

import errno

import pytest
import usb.core
import usb.util

from app.sim import VirtualBus, backend as sim_backend
from app.sim.awg import VirtualAwg
from app.sim.device import (
    ConfigDesc,
    DeviceDesc,
    EndpointDesc,
    InterfaceDesc,
    Speed,
    string_descriptor,
)
from app.sim.pyusb_backend import VirtualBackend
from app.sim.sam7 import Sam7Counter
from app.sim.scpi_device import VirtualLoopback

SAM7_DEVICE = bytes.fromhex("12 01 0002 00 00 00 40 0912 0100 0001 01 02 03 01")
SAM7_CONFIG = bytes.fromhex(
    "09 02 2700 01 01 00 80 32"  # configuration 1, bus powered, 100 mA
    "09 04 00 00 03 fe 03 01 00"  # USBTMC, USB488 protocol, 3 endpoints
    "07 05 01 02 4000 00"  # Bulk-OUT, 64 bytes
    "07 05 82 02 4000 00"  # Bulk-IN, 64 bytes
    "07 05 83 03 0800 0a"  # Interrupt-IN, 8 bytes, every 10 ms
)
LOOPBACK_CONFIG_ENDPOINTS = bytes.fromhex("07 05 01 02 0002 00" "07 05 82 02 0002 00" "07 05 83 03 0800 08")


def test_sam7_descriptors_are_byte_exact():
    device = Sam7Counter()
    assert device.device_desc.to_bytes() == SAM7_DEVICE
    assert device.configs[0].to_bytes() == SAM7_CONFIG
    assert device.speed == Speed.FULL


def test_loopback_is_high_speed_with_512_byte_bulk_packets():
    device = VirtualLoopback()
    assert device.device_desc.to_bytes() == bytes.fromhex("12 01 0002 00 00 00 40 0912 0200 0001 01 02 03 01")
    config = device.configs[0].to_bytes()
    assert config[:9] == bytes.fromhex("09 02 2700 01 01 00 80 32")
    assert config.endswith(LOOPBACK_CONFIG_ENDPOINTS)


def test_descriptor_building_blocks():
    ep = EndpointDesc(0x81, 0x03, 16, 4)
    assert ep.to_bytes() == bytes.fromhex("07 05 81 03 1000 04") and ep.is_in and ep.transfer_type == 3
    alt0 = InterfaceDesc(0, 0, 0xFF, 0, 0)
    alt1 = InterfaceDesc(0, 1, 0xFF, 0, 0, (ep,))
    other = InterfaceDesc(1, 0, 0xFF, 0, 0)
    config = ConfigDesc(2, (alt0, alt1, other), 0xC0, 500, 4)
    raw = config.to_bytes()
    # wTotalLength covers every alternate setting; bNumInterfaces counts interface numbers.
    assert raw[:9] == bytes.fromhex("09 02 2b00 02 02 04 c0 fa") and len(raw) == 9 + 3 * 9 + 7
    desc = DeviceDesc(0x0200, 0xEF, 2, 1, 64, 0x1209, 0x0002, 0x0123, 1, 2, 0, 1)
    assert desc.to_bytes() == bytes.fromhex("12 01 0002 ef 02 01 40 0912 0200 2301 01 02 00 01")
    assert desc.qualifier_bytes() == bytes.fromhex("0a 06 0002 ef 02 01 40 01 00")
    assert string_descriptor("Aé") == bytes.fromhex("06 03 4100 e900")


def test_standard_requests_on_endpoint_zero(sam7):
    assert sam7.control(0x80, 6, 0x0100, 0, 18) == SAM7_DEVICE
    assert sam7.control(0x80, 6, 0x0200, 0, 9) == SAM7_CONFIG[:9]  # a short read of the header only
    assert sam7.control(0x80, 6, 0x0200, 0, 255) == SAM7_CONFIG
    assert sam7.control(0x80, 6, 0x0300, 0, 255) == bytes.fromhex("04 03 0904")  # LANGID table
    assert sam7.control(0x80, 6, 0x0302, 0x0409, 255) == string_descriptor("SAM7-EK")
    assert sam7.control(0x80, 8, 0, 0, 1) == b"\x01"  # configured by enumeration
    assert sam7.control(0x80, 0, 0, 0, 2) == b"\x00\x00"  # bus powered, no remote wakeup
    assert sam7.control(0x81, 10, 0, 0, 1) == b"\x00"  # GET_INTERFACE
    assert sam7.control(0x82, 0, 0, 0x82, 2) == b"\x00\x00"
    sam7.control(0x02, 3, 0, 0x82, b"")  # SET_FEATURE(ENDPOINT_HALT)
    assert sam7.control(0x82, 0, 0, 0x82, 2) == b"\x01\x00"
    sam7.clear_halt(0x82)
    assert sam7.control(0x82, 0, 0, 0x82, 2) == b"\x00\x00"
    from app.sim.device import Stall

    for request in [(0x80, 6, 0x0600, 0, 10),  # DEVICE_QUALIFIER: a full-speed-only device stalls
                    (0x80, 6, 0x0309, 0, 255),  # no such string
                    (0x80, 6, 0x0201, 0, 255),  # no second configuration
                    (0x80, 12, 0, 0x83, 2)]:  # SYNCH_FRAME
        with pytest.raises(Stall):
            sam7.control(*request)


def test_pyusb_finds_the_default_instruments_and_reads_their_strings():
    backend = sim_backend()
    found = {(d.idVendor, d.idProduct): d for d in usb.core.find(find_all=True, backend=backend)}
    assert set(found) == {(0x1209, 0x0001), (0x1209, 0x0002), (0x1209, 0x000C)}
    sam7 = found[0x1209, 0x0001]
    assert (sam7.manufacturer, sam7.product, sam7.serial_number) == ("XYZ Company Ltd", "SAM7-EK", "SAM7-0001")
    assert usb.util.get_string(sam7, sam7.iProduct) == "SAM7-EK"
    assert sam7.langids == (0x0409,)
    assert sam7.speed == usb.util.SPEED_FULL and found[0x1209, 0x0002].speed == usb.util.SPEED_HIGH
    assert sam7.bus == 1 and sam7.address >= 2 and sam7.port_number >= 1
    intf = sam7.get_active_configuration()[(0, 0)]
    assert (intf.bInterfaceClass, intf.bInterfaceSubClass, intf.bInterfaceProtocol) == (0xFE, 3, 1)
    assert [ep.bEndpointAddress for ep in intf] == [0x01, 0x82, 0x83]
    assert [ep.wMaxPacketSize for ep in intf] == [64, 64, 8]
    loop = found[0x1209, 0x0002]
    assert loop.product == "Virtual Loopback"
    assert [ep.wMaxPacketSize for ep in loop[0][(0, 0)]] == [512, 512, 8]
    assert isinstance(backend, VirtualBackend) and {type(d) for d in backend.bus.devices()} == {
        Sam7Counter, VirtualLoopback, VirtualAwg}


def test_configuration_and_claims_behave_like_libusb(backend, sam7):
    dev = usb.core.find(backend=backend, idVendor=0x1209, idProduct=0x0001)
    dev.set_configuration()
    assert dev.get_active_configuration().bConfigurationValue == 1
    usb.util.claim_interface(dev, 0)
    other = usb.core.find(backend=backend, idVendor=0x1209, idProduct=0x0001)
    with pytest.raises(usb.core.USBError) as busy:
        usb.util.claim_interface(other, 0)
    assert (busy.value.backend_error_code, busy.value.errno) == (-6, errno.EBUSY)
    with pytest.raises(usb.core.USBError) as busy_config:
        dev.set_configuration()  # libusb refuses while interfaces are claimed
    assert busy_config.value.backend_error_code == -6
    with pytest.raises(usb.core.USBError) as missing:
        usb.util.claim_interface(dev, 3)
    assert missing.value.backend_error_code == -5
    usb.util.release_interface(dev, 0)
    usb.util.claim_interface(other, 0)
    usb.util.dispose_resources(other)
    usb.util.dispose_resources(dev)
    assert dev.is_kernel_driver_active(0) is False


def test_a_stall_is_a_pipe_error_and_timeouts_are_libusb_timeouts(backend, sam7):
    dev = usb.core.find(backend=backend, idVendor=0x1209, idProduct=0x0001)
    with pytest.raises(usb.core.USBError) as stall:
        dev.ctrl_transfer(0xC0, 0x42, 0, 0, 4)  # an unknown vendor request
    assert (stall.value.backend_error_code, stall.value.errno) == (-9, errno.EPIPE)
    with pytest.raises(usb.core.USBTimeoutError) as timeout:
        dev.read(0x82, 64, timeout=20)  # nothing to read: NAKs until the timeout
    assert (timeout.value.backend_error_code, timeout.value.errno) == (-7, errno.ETIMEDOUT)
    # An endpoint outside the configuration: pyusb itself refuses it; the backend says EIO as usbfs would.
    with pytest.raises(ValueError):
        dev.write(0x05, b"x", timeout=20)
    with pytest.raises(usb.core.USBError) as no_endpoint:
        backend.bulk_write(dev._ctx.handle, 0x05, 0, b"x", 20)
    assert no_endpoint.value.backend_error_code == -1


def test_unplugging_makes_every_call_fail_with_no_device(backend, bus, sam7):
    dev = usb.core.find(backend=backend, idVendor=0x1209, idProduct=0x0001)
    dev.set_configuration()
    bus.unplug(sam7)
    with pytest.raises(usb.core.USBError) as gone:
        dev.ctrl_transfer(0x80, 6, 0x0100, 0, 18)
    assert (gone.value.backend_error_code, gone.value.errno) == (-4, errno.ENODEV)
    assert usb.core.find(backend=backend, idVendor=0x1209, idProduct=0x0001) is None
    entry = bus.plug(sam7)
    # A reference from the earlier connection stays dead, as a libusb_device would.
    with pytest.raises(usb.core.USBError):
        dev.ctrl_transfer(0x80, 6, 0x0100, 0, 18)
    again = usb.core.find(backend=backend, idVendor=0x1209, idProduct=0x0001)
    assert again.address == entry.address != dev.address


def test_a_blocked_read_wakes_with_no_device_when_unplugged(backend, bus, sam7):
    import threading

    dev = usb.core.find(backend=backend, idVendor=0x1209, idProduct=0x0001)
    dev.set_configuration()
    outcome = []

    def reader():
        try:
            dev.read(0x83, 8, timeout=0)  # 0: wait forever, as in libusb
        except usb.core.USBError as exc:
            outcome.append(exc.backend_error_code)

    polled = threading.Event()
    sam7.faults[0x83] = lambda direction, data: polled.set()  # the fault seam as a probe
    thread = threading.Thread(target=reader)
    thread.start()
    assert polled.wait(2)  # the reader has tried once and now waits on the device condition
    bus.unplug(sam7)
    thread.join(2)
    assert outcome == [-4]


def test_reset_keeps_the_configuration_like_a_host_stack(backend, sam7):
    dev = usb.core.find(backend=backend, idVendor=0x1209, idProduct=0x0001)
    dev.set_configuration()
    sam7.halt(0x01)
    dev.reset()
    assert sam7.configuration == 1 and not sam7.is_halted(0x01)


def test_bus_hands_out_fresh_addresses_and_reports_plugs():
    bus = VirtualBus(bus_number=3)
    events = []
    bus.listeners.append(lambda event, entry: events.append((event, entry.address)))
    a, b = Sam7Counter(serial="A"), Sam7Counter(serial="B")
    first = bus.plug(a)
    second = bus.plug(b)
    assert (first.address, second.address, first.bus_number) == (2, 3, 3)
    assert bus.find(serial="B") is b and bus.find(pid=0x7777) is None
    bus.unplug(a)
    assert bus.plug(a).address == 4
    assert events == [("plug", 2), ("plug", 3), ("unplug", 2), ("plug", 4)]
    with pytest.raises(ValueError):
        bus.plug(a)
