"""``tmc bench --libusb``: the AWG served through umockdev, every implementation on the real libusb."""

import pytest

from app import bench

pytestmark = pytest.mark.libusb


def test_the_bench_runs_over_the_real_libusb(umockdev_available, capsys):
    options = bench.BenchOptions(sizes=(64 * 1024,), queries=10, rounds=1, libusb=True)
    records = bench.run(options)
    with capsys.disabled():
        print("\n" + bench.report(records, options, targets=False))  # a 64 KiB smoke run judges no target
    assert {(r.implementation, r.measure) for r in records} == {
        (name, measure) for name in bench.IMPLEMENTATIONS for measure in ("upload", "query")}
    assert all(r.transport == "umockdev + real libusb" for r in records)
    assert all(r.verified for r in records if r.measure == "upload")
