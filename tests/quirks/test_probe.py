"""The compliance probe against every virtual instrument: the compliant ones pass, each
quirky one is diagnosed with the finding its quirk entry cures."""

from __future__ import annotations

import json
import threading

import pytest

import app.sim
from app.cli import EXIT_DEVICE, main
from app.usbtmc import DeviceNotFoundError, Instrument, list_resources
from app.usbtmc.probe import FAIL, PASS, SKIP, STEPS, plan, prepare_quirk_entry, probe, save_quirk_entry
from app.usbtmc.quirks import QuirkDatabase, load_database, parse_database

TIMEOUT_MS = 300

# What the probe must find on each quirky instrument: the flags its shipped entry sets
# that a probe can see from outside (the rest are said in the test ids' comments).
EXPECTED = {
    "rigol-ds1000": {"header_in_first_transfer_only": True, "single_request_per_reply": True,
                     "ren_control_broken": True},
    "agilent-dso1000": {"ren_control_broken": True},
    "rigol-ds1000z-old": {"header_in_first_transfer_only": True, "no_initiate_clear": True, "clear_on_open": False},
    "rigol-ds1000z": {"no_initiate_clear": True, "clear_on_open": False},
    "rigol-ds1102z-e": {"no_zlp": True, "no_initiate_clear": True, "clear_on_open": False},
    "rigol-dho800": {"tolerate_stale_btag": True},
    "rigol-dp800": {"clear_halt_on_close": True},
    "siglent-sds1000x-e": {"max_in_transfer_bytes": 48, "transfer_size_includes_padding": True,
                           "no_initiate_clear": True, "clear_on_open": False},
    "siglent-sdg1000x": {"transfer_size_unreliable": True, "no_eom": True},
    "thorlabs-pm100d": {"clear_halts_bulk_in": True},
    "thorlabs-pm101u": {"remote_on_open": True, "clear_halts_bulk_in": True, "no_drain_on_clear": True},
    "adcmt": {"force_usbtmc": True, "max_in_transfer_bytes": 63, "no_eom": True},
    "bk-8600": {"remote_on_open": True},
}


def _probe(bus, key, **kwargs):
    return probe(bus.resource(key), bus.backend, timeout_ms=TIMEOUT_MS, db=bus.db, **kwargs)


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_each_quirky_instrument_is_diagnosed(quirky, key):
    bus = quirky(key)
    report = _probe(bus, key)
    suggested = report.suggested_flags()
    assert {flag: suggested.get(flag) for flag in EXPECTED[key]} == EXPECTED[key], report.text()
    assert not report.compliant
    # Every suggested flag agrees with the shipped entry (the probe never invents a cure).
    shipped = bus.db.lookup(report.vid, report.pid, report.product, report.idn)
    for flag, value in suggested.items():
        assert getattr(shipped, flag) == value, (flag, report.text())


def test_the_siglent_clone_only_gets_a_warning_for_its_empty_serial(quirky):
    bus = quirky("siglent-clone")
    report = _probe(bus, "siglent-clone")
    assert report.compliant and report.suggested_flags() == {}
    (warning,) = [f for f in report.findings if f.verdict == "warn"]
    assert warning.check == "strings" and "empty serial field" in warning.observed


def test_the_fca3000_passes_because_the_probe_drains(quirky):
    """The counter is compliant when the host runs the exact sequence; the probe cannot show
    the failure without leaving the instrument stuck, so it does not try."""
    bus = quirky("tektronix-fca3000")
    report = _probe(bus, "tektronix-fca3000")
    assert report.compliant
    checks = {f.check: f for f in report.findings}
    assert checks["abort_bulk_in"].verdict == PASS and checks["timeout_recovery"].verdict == PASS
    with bus.open("tektronix-fca3000") as counter:
        assert counter.query("*IDN?").startswith("TEKTRONIX")  # still answering after the probe


def test_an_instrument_in_firmware_update_mode_is_switched_and_probed(quirky):
    bus = quirky("keysight-u2751a")
    report = _probe(bus, "keysight-u2751a")
    assert report.compliant and report.pid == 0x3D18 and report.idn.startswith("Agilent Technologies,U2751A")


def test_the_u2741a_cannot_be_probed_without_a_sequence(quirky):
    bus = quirky("keysight-u2741a")
    with pytest.raises(DeviceNotFoundError, match="no sequence"):
        _probe(bus, "keysight-u2741a")


@pytest.fixture
def default_bus():
    backend = app.sim.backend()
    return backend, {info.product: info.resource for info in list_resources(backend, probe=False)}


@pytest.mark.parametrize("product", ["SAM7-EK", "Virtual Loopback", "Virtual AWG"])
def test_the_compliant_instruments_pass(default_bus, product):
    backend, resources = default_bus
    if product not in resources:
        pytest.skip(f"{product} is not on the default bus")
    report = probe(resources[product], backend, timeout_ms=TIMEOUT_MS, db=QuirkDatabase())
    assert report.compliant and report.count("warn") == 0, report.text()
    assert report.suggested_flags() == {} and report.quirk_entry() == ""
    verdicts = {f.check: f.verdict for f in report.findings}
    assert verdicts["initiate_clear"] == PASS and verdicts["abort_bulk_in"] == PASS
    assert verdicts["zlp"] == PASS  # the probe makes a reply long enough to fill a packet
    with Instrument(resources[product], backend=backend, timeout_ms=TIMEOUT_MS) as inst:
        assert inst.query("*IDN?")  # the probe left the instrument as it found it
        if product == "SAM7-EK":
            assert inst.query("*ESR?") in ("#H00", "#H80")  # the deliberate timeout's QYE was read away


def test_termchar_is_checked_where_claimed(default_bus):
    backend, resources = default_bus
    loop = probe(resources["Virtual Loopback"], backend, timeout_ms=TIMEOUT_MS, db=QuirkDatabase())
    sam7 = probe(resources["SAM7-EK"], backend, timeout_ms=TIMEOUT_MS, db=QuirkDatabase())
    assert {f.check: f.verdict for f in loop.findings}["termchar"] == PASS
    assert {f.check: f.verdict for f in sam7.findings}["termchar"] == SKIP


def test_report_as_text_json_and_quirk_entry(quirky):
    bus = quirky("rigol-dho800")
    report = _probe(bus, "rigol-dho800")
    text = report.text()
    assert "FAIL  bTag echo and bTagInverse" in text and "USBTMC 1.0 §3.3.1" in text
    assert "tolerate_stale_btag = true" in text
    data = json.loads(report.to_json())
    assert data["vid"] == "0x1AB1" and data["pid"] == "0x044D" and data["suggested_flags"] == {
        "tolerate_stale_btag": True}
    failing = [f for f in data["findings"] if f["verdict"] == FAIL]
    assert failing and all(f["spec"] and f["observed"] for f in failing)
    (entry,) = parse_database(report.quirk_entry(), "probe")
    assert entry.vid == 0x1AB1 and entry.pids == (0x044D,) and entry.flags == {"tolerate_stale_btag": True}


def test_a_saved_entry_makes_the_session_work(quirky, tmp_path):
    bus = quirky("rigol-dho800")
    report = _probe(bus, "rigol-dho800")
    user = tmp_path / "config" / "quirks.toml"
    user.parent.mkdir()
    user.write_text("# my quirks\n")
    assert save_quirk_entry(report, user, base=[]) == user  # as if nothing shipped knew the scope
    assert user.read_text().startswith("# my quirks\n")
    db = load_database(user)
    with Instrument(bus.resource("rigol-dho800"), backend=bus.backend, timeout_ms=TIMEOUT_MS, quirk_db=QuirkDatabase(
            entries=[e for e in db.entries if e.origin.startswith(str(user))])) as scope:
        assert scope.quirks.tolerate_stale_btag
        assert scope.query("*IDN?") == scope.query("*IDN?")
    with pytest.raises(ValueError, match="nothing a quirk flag"):
        save_quirk_entry(_probe(quirky("siglent-clone"), "siglent-clone"), user)


def test_saving_merges_with_the_entries_that_already_apply(quirky, tmp_path):
    """The shipped entry already cures the DHO800: nothing to propose. A flag the user's own
    entry for the device lacks joins that entry instead of a second one."""
    bus = quirky("rigol-dho800")
    report = _probe(bus, "rigol-dho800")
    user = tmp_path / "quirks.toml"
    with pytest.raises(ValueError, match="already apply.*Rigol DHO800"):
        save_quirk_entry(report, user)
    assert not user.exists()
    user.write_text('[[quirk]]\nname = "my DHO"\nvid = 0x1AB1\npid = [0x044D]\nreason = "r"\nsource = "s"\n'
                    "[quirk.flags]\nclear_halt_on_close = true\n\n"
                    '[[quirk]]\nname = "other"\nvid = 0x1AB1\npid = [0x0E11]\nreason = "r"\nsource = "s"\n'
                    "[quirk.flags]\nno_zlp = true\n")
    prepared = prepare_quirk_entry(report, user, base=[])
    assert prepared.merged_into == "my DHO" and prepared.flags == {"tolerate_stale_btag": True}
    save_quirk_entry(report, user, base=[])
    entries = parse_database(user.read_text(), "user")
    assert [e.name for e in entries] == ["my DHO", "other"]
    assert entries[0].flags == {"clear_halt_on_close": True, "tolerate_stale_btag": True}
    assert entries[1].flags == {"no_zlp": True}
    with pytest.raises(ValueError, match="already apply.*my DHO"):
        save_quirk_entry(report, user, base=[])  # a second save proposes nothing new
    assert not list(tmp_path.glob("*.new"))


def test_steps_have_readable_labels_and_say_what_is_risky():
    names = [step.name for step in STEPS]
    assert names[0] == "descriptors" and names[-1] == "initiate_clear"
    for step in STEPS:
        words = step.label.split(" (")[0]  # the request's spec name may follow in brackets
        assert "_" not in words and words[0].isupper() and words != step.name, step
    ds1000z = load_database().lookup(0x1AB1, 0x04CE, "DS1104Z")
    safe = {p.step.name: p for p in plan(ds1000z, safe=True)}
    assert not safe["initiate_clear"].runs and "no_initiate_clear = true" in safe["initiate_clear"].skip_reason
    assert all(p.runs for name, p in safe.items() if name != "initiate_clear")
    assert all(p.runs for p in plan(ds1000z, safe=False))
    assert all(p.runs for p in plan(QuirkDatabase().lookup(0x1AB1, 0x04CE), safe=True))


def test_a_safe_run_skips_the_clear_that_hangs_the_ds1000z_and_reports_step_by_step(quirky):
    bus = quirky("rigol-ds1000z")
    seen, labels = [], []
    report = _probe(bus, "rigol-ds1000z", safe=True, progress=labels.append,
                    on_step=lambda step, findings: seen.append((step.name, findings)))
    assert report.safe and not report.stopped_answering
    assert [name for name, _ in seen] == [step.name for step in STEPS]
    assert sum(len(findings) for _, findings in seen) >= len(report.findings)
    (clear,) = [f for f in report.findings if f.check == "initiate_clear"]
    assert clear.verdict == SKIP and "safe mode" in clear.observed
    assert "Device clear (INITIATE_CLEAR)" not in labels and "query" not in labels
    with bus.open("rigol-ds1000z") as scope:
        assert scope.query("*IDN?").startswith("RIGOL")  # still answering
    full = _probe(bus, "rigol-ds1000z")
    assert full.stopped_answering and not full.safe


def test_a_failed_step_is_named_in_words(quirky, monkeypatch):
    from app.usbtmc import probe as module
    from app.usbtmc.errors import TmcTimeoutError

    def _reopen_session(self):
        raise TmcTimeoutError("no reply")

    monkeypatch.setattr(module._Prober, "_reopen_session", _reopen_session)
    bus = quirky("rigol-dho800")
    report = _probe(bus, "rigol-dho800")
    (failed,) = [f for f in report.findings if f.check == "reopen_session"]
    assert failed.title == "A new session on the same interface"
    assert "reopen_session" not in report.text()


def test_every_step_of_the_table_has_its_check_and_runs_in_the_table_order(default_bus):
    from app.usbtmc.probe import _Prober

    names = {step.name for step in STEPS[1:]}  # "descriptors" needs no session
    for name in names:
        assert callable(_Prober.check.__get__(object.__new__(_Prober))(name)), name
    labels = []
    backend, resources = default_bus
    probe(resources["Virtual Loopback"], backend, timeout_ms=TIMEOUT_MS, db=QuirkDatabase(), progress=labels.append)
    assert labels == [step.label for step in STEPS[1:]]
    assert not any("_" in label.split(" (")[0] for label in labels)


def test_a_failed_reply_framing_step_is_named_in_words(quirky, monkeypatch):
    from app.usbtmc import probe as module
    from app.usbtmc.errors import TmcError

    def _query(self):
        raise TmcError("the reply was garbled")

    monkeypatch.setattr(module._Prober, "_query", _query)
    report = _probe(quirky("rigol-dho800"), "rigol-dho800")
    failed = [f for f in report.findings if f.check == "query"]
    assert failed and failed[0].title.startswith("Reply framing")
    assert "FAIL  query" not in report.text()


def test_cancel_stops_between_checks(quirky):
    bus = quirky("rigol-dho800")
    cancel = threading.Event()
    seen = []

    def progress(title):
        seen.append(title)
        if len(seen) == 3:
            cancel.set()

    report = _probe(bus, "rigol-dho800", progress=progress, cancel=cancel)
    assert report.cancelled and len(seen) == 3 and "(cancelled)" in report.text()


def test_tmc_probe(capsys, tmp_path):
    resource = "USB0::0x1AB1::0x044D::DHO8A000000001::INSTR"
    quirks_file = tmp_path / "quirks.toml"
    assert main(["probe", "--sim", "--timeout-ms", "300", resource, "--save-quirks", "--quirks-file",
                 str(quirks_file)]) == EXIT_DEVICE  # a failed check: usable in CI
    out, err = capsys.readouterr()
    assert out.startswith(f"Compliance probe of {resource}") and "FAIL  bTag echo" in out
    assert "Suggested entry for your quirks file" in out
    # The shipped entry already sets the flag: no duplicate is written.
    assert "already apply" in err and "nothing saved" in err and not quirks_file.exists()
    assert main(["probe", "--sim", "--json", "--timeout-ms", "300", "USB0::0x1209::0x0001::SAM7-0001::INSTR"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["fail"] == 0 and data["resource"] == "USB0::0x1209::0x0001::SAM7-0001::INSTR"
    assert main(["probe", "--sim", "USB0::0x1209::0x0BAD::X::INSTR"]) == 1
    assert "no USBTMC device 1209:0BAD" in capsys.readouterr().err
