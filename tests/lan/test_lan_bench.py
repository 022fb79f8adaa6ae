"""``tmc bench --lan`` runs and reports verified records (figures are measurements, never asserted)."""

from app.bench_lan import report, run


def test_bench_lan_measures_every_protocol_beside_usb_and_verifies_the_uploads():
    records = run((64 * 1024,), queries=5, rounds=1)
    names = {r["implementation"] for r in records}
    assert names == {"app.usbtmc USB", "app.lan SOCKET", "app.lan VXI-11", "app.lan HiSLIP",
                     "pyvisa-py SOCKET", "pyvisa-py VXI-11", "pyvisa-py HiSLIP"}
    assert all(r["verified"] for r in records)  # the AWG stored each upload's length and CRC-32
    assert all(r.get("MBps", 1) > 0 and r.get("round_trip_ms", 1) > 0 for r in records)
    text = report(records)
    assert "app.lan vs pyvisa-py" in text and "!" not in text
