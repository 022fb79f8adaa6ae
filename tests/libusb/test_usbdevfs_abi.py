"""The usbdevfs numbers and layouts in app.sim.umockdev.usbdevfs, checked against the kernel header.

Needs a C compiler and linux/usbdevice_fs.h (linux-libc-dev); skipped without them.
It does not need umockdev, so it carries no ``libusb`` marker.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.sim.umockdev import usbdevfs

HEADER = Path("/usr/include/linux/usbdevice_fs.h")

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("cc") is None or not HEADER.exists(),
    reason="needs Linux, a C compiler and linux/usbdevice_fs.h",
)

LAYOUT = {
    "sizeof(struct usbdevfs_urb)": usbdevfs.URB.size,
    "offsetof(struct usbdevfs_urb, status)": usbdevfs.URB_STATUS_OFFSET,
    "offsetof(struct usbdevfs_urb, buffer)": usbdevfs.URB_BUFFER_OFFSET,
    "offsetof(struct usbdevfs_urb, actual_length)": usbdevfs.URB_ACTUAL_LENGTH_OFFSET,
    "sizeof(struct usbdevfs_ctrltransfer)": usbdevfs.CTRLTRANSFER.size,
    "offsetof(struct usbdevfs_ctrltransfer, data)": usbdevfs.CTRLTRANSFER_DATA_OFFSET,
    "sizeof(struct usbdevfs_bulktransfer)": usbdevfs.BULKTRANSFER.size,
    "sizeof(struct usbdevfs_setinterface)": usbdevfs.SETINTERFACE.size,
    "sizeof(struct usbdevfs_getdriver)": usbdevfs.GETDRIVER.size,
    "sizeof(struct usbdevfs_connectinfo)": usbdevfs.CONNECTINFO.size,
    "sizeof(struct usbdevfs_ioctl)": usbdevfs.IOCTL.size,
    "sizeof(struct usbdevfs_disconnect_claim)": usbdevfs.DISCONNECT_CLAIM.size,
}


def test_ioctl_numbers_and_struct_layouts_match_the_kernel_header(tmp_path):
    expressions = {f"USBDEVFS_{request.name}": int(request) for request in usbdevfs.Request}
    expressions.update(LAYOUT)
    expressions.update({f"USBDEVFS_CAP_{cap.name}": int(cap) for cap in usbdevfs.Capability})
    expressions.update({f"USBDEVFS_URB_TYPE_{t.name}": int(t) for t in usbdevfs.UrbType})
    lines = [f'    printf("%lu\\n", (unsigned long)({expr}));' for expr in expressions]
    source = tmp_path / "abi.c"
    source.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include <sys/ioctl.h>\n#include <linux/usbdevice_fs.h>\n"
        "int main(void) {\n" + "\n".join(lines) + "\n    return 0;\n}\n"
    )
    binary = tmp_path / "abi"
    subprocess.run(["cc", str(source), "-o", str(binary)], check=True, capture_output=True, timeout=60)
    values = subprocess.run([str(binary)], check=True, capture_output=True, text=True, timeout=10).stdout.split()
    got = dict(zip(expressions, map(int, values), strict=True))
    assert got == expressions
