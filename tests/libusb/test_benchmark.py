"""A short run of the real-libusb benchmark; it prints its figures (pytest -s, or see the captured output)."""

from pathlib import Path

import pytest
from support import load_script

pytestmark = pytest.mark.libusb

benchmark = load_script(Path(__file__).with_name("benchmark.py"))


def test_the_benchmark_measures_every_method_and_prints_the_ratios(umockdev_available, capsys):
    result = benchmark.run(upload_mib=2, queries=30, rounds=2)
    with capsys.disabled():
        print("\n" + benchmark.report(result))
    expected = {
        "query_ms/raw write+read", "query_ms/raw 3 transfers", "query_ms/raw 3 overlapped", "upload_MBps/raw", "small_upload_MBps/raw",
        "query_ms/app.usbtmc", "upload_MBps/app.usbtmc", "query_ms/python-usbtmc", "upload_MBps/python-usbtmc",
        "query_ms/pyvisa-py", "small_upload_MBps/pyvisa-py",
    }
    assert set(result["figures"]) == expected
    assert all(value > 0 for value in result["figures"].values())
    assert "libusb-1.0" in result["libusb"]
    for name, (median, low, high) in result["ratios"].items():
        assert 0 < low <= median <= high, name
