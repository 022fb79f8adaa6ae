import pytest


@pytest.fixture
def sim(sim_backend):
    """The root conftest's ``sim_backend``, under the short name the core tests use."""
    return sim_backend


def _resource(backend, pid: int) -> str:
    from app.usbtmc import list_resources

    for info in list_resources(backend):
        if info.vid == 0x1209 and info.pid == pid:
            return info.resource
    raise AssertionError(f"no virtual instrument 1209:{pid:04X} on the bus")


@pytest.fixture
def sam7_device(sim):
    from app.sim.sam7 import Sam7Counter

    return sim.bus.find(kind=Sam7Counter)


@pytest.fixture
def sam7(sim):
    from app.usbtmc import Instrument

    with Instrument(_resource(sim, 0x0001), backend=sim, timeout_ms=300) as inst:
        yield inst


@pytest.fixture
def loopback(sim):
    from app.usbtmc import Instrument

    with Instrument(_resource(sim, 0x0002), backend=sim, timeout_ms=2000) as inst:
        yield inst


class TransferLog:
    """Records the bulk transfers a pyusb backend carries (the real backend, wrapped)."""

    def __init__(self, backend):
        self.writes: list[bytes] = []
        self.read_sizes: list[int] = []
        original_write, original_read = backend.bulk_write, backend.bulk_read

        def bulk_write(handle, ep, intf, data, timeout):
            self.writes.append(bytes(data))
            return original_write(handle, ep, intf, data, timeout)

        def bulk_read(handle, ep, intf, buff, timeout):
            self.read_sizes.append(len(buff))
            return original_read(handle, ep, intf, buff, timeout)

        backend.bulk_write, backend.bulk_read = bulk_write, bulk_read

    def message_transfers(self) -> list[tuple[int, bool]]:
        """(TransferSize, EOM) of each DEV_DEP_MSG_OUT written."""
        return [
            (int.from_bytes(w[4:8], "little"), bool(w[8] & 1)) for w in self.writes if w[0] == 1
        ]


@pytest.fixture
def transfer_log(sim):
    return TransferLog(sim)
