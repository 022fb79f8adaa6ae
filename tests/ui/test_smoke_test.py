"""The frozen app's self-check (`tmc-console --smoke-test`), run unfrozen."""

import json

from app.ui.main import SmokeFailure, check_bundled_libusb, run_smoke_test


def test_the_smoke_test_reports_every_step_in_one_json_line(qapp, capsys, tmp_path):
    assert run_smoke_test(qapp, timeout_s=20, report_path=str(tmp_path / "smoke.json")) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert (tmp_path / "smoke.json").read_text() == out[0] + "\n"  # for a windowed program without stdout
    report = json.loads(out[0])
    assert report["smoke_test"] == "passed" and report["frozen"] is False
    assert "SAM7" in report["idn"] and isinstance(report["stb"], int) and report["awg_points"] == 4096
    for key in ("libusb_path", "libusb_version", "qt", "pyside6", "os"):
        assert report[key], key


def test_a_libusb_outside_the_bundle_fails_the_smoke_test(qapp, capsys):
    def system_libusb():
        raise SmokeFailure("libusb was loaded from /usr/lib/libusb-1.0.so.0, outside the bundle /opt/tmc")

    assert run_smoke_test(qapp, timeout_s=5, libusb_check=system_libusb) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out.splitlines()[0])
    assert report["smoke_test"] == "failed" and "outside the bundle" in report["error"]
    assert "smoke test FAILED" in captured.err


def test_a_frozen_build_must_load_libusb_from_inside_itself(tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    try:
        check_bundled_libusb()
    except SmokeFailure as exc:
        assert "outside the bundle" in str(exc)
    else:
        raise AssertionError("a libusb outside the bundle passed")
