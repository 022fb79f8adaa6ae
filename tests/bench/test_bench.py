"""``tmc bench`` runs and reports sane records. Never timed: a benchmark's figures are not pass/fail."""

from __future__ import annotations

import json

import pytest

from app import bench, cli

KIB = 1024


@pytest.fixture(scope="module")
def records():
    options = bench.BenchOptions(sizes=(64 * KIB, 70_000), queries=20, rounds=2)
    return options, bench.run(options)


def test_every_implementation_uploads_and_queries_and_the_device_verifies_it(records):
    options, found = records
    keys = {(r.implementation, r.measure, r.size_bytes) for r in found}
    assert keys == {(name, "upload", size) for name in bench.IMPLEMENTATIONS for size in options.sizes} | {
        (name, "query", None) for name in bench.IMPLEMENTATIONS}
    for record in found:
        assert len(record.rounds) == 2
        if record.measure == "upload":
            assert record.verified is True and record.MBps > 0 and record.device_cpu_ms_per_MB > 0
            # The console works on its session's thread, which the benchmark thread's CPU time misses.
            assert (record.host_cpu_ms_per_MB is None) == (record.implementation == bench.CONSOLE)
            assert record.host_cpu_ms_per_MB is None or record.host_cpu_ms_per_MB > 0
        else:
            assert 0 < record.round_trip_ms < 1000
    core = [r for r in found if r.implementation == bench.CORE]
    assert all(set(r.vs) == {bench.CORE_TRACED, bench.CONSOLE, bench.PYTHON_USBTMC, bench.PYVISA_PY}
               and min(r.vs.values()) > 0 for r in core)
    traced = [r for r in found if r.implementation == bench.CORE_TRACED]
    assert len(traced) == 3 and all(r.verified is not False for r in traced)


def test_the_report_names_sizes_ratios_and_targets(records):
    options, found = records
    text = bench.report(found, options)
    assert "64 KiB" in text and "core / python-usbtmc" in text and "*IDN? round trip" in text
    assert "Targets: upload >= 1x python-usbtmc" in text and "upload >= 10x pyvisa-py" in text
    assert "console upload >= 0.95x the core" in text and "console *IDN? <= 1.10x the core" in text
    assert "Tracing on (app.usbtmc+trace beside app.usbtmc, same run): upload 64 KiB " in text
    assert "tracing costs <= 5 %: " in text
    costs = bench.trace_costs(found)
    assert set(costs) == {"upload 64 KiB", "upload 70000 B", "query"}


def test_tmc_bench_json_prints_one_record_per_implementation_and_measure(capsys):
    assert cli.main(["bench", "--sizes", "64K", "--rounds", "1", "--queries", "5", "--json",
                     "--only", "app.usbtmc,python-usbtmc"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["implementation"], r["measure"]) for r in lines] == [
        ("app.usbtmc", "upload"), ("python-usbtmc", "upload"), ("app.usbtmc", "query"), ("python-usbtmc", "query")]
    assert lines[0]["vs"]["python-usbtmc"] > 0 and lines[0]["transport"] == "in-process virtual bus"


def test_the_wire_model_is_never_beaten(capsys):
    assert cli.main(["bench", "--sizes", "64K", "--rounds", "1", "--queries", "5", "--json", "--wire", "full",
                     "--only", "app.usbtmc"]) == 0
    upload = json.loads(capsys.readouterr().out.splitlines()[0])
    assert upload["wire"] == "full" and 0.3 < upload["of_wire_limit"] <= 1.0


@pytest.mark.parametrize(("args", "words"), [
    (["--only", "nope"], "unknown implementation nope"),
    (["--sizes", "3"], "sizes are an even number of bytes"),
    (["--rounds", "0"], "at least 1"),
])
def test_bad_options_are_one_line(capsys, args, words):
    assert cli.main(["bench", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tmc bench: ") and words in err and err.count("\n") == 1


def test_a_smoke_run_prints_figures_without_verdicts():
    """A passing test prints figures only: 'MISSED' belongs to the benchmark's own judgement."""
    options = bench.BenchOptions(sizes=(64 * 1024,), queries=2, rounds=1,
                                 implementations=("app.usbtmc", "python-usbtmc"))
    records = bench.run(options)
    figures = bench.report(records, options, targets=False)
    assert "Upload of DATA:ARB:DAC" in figures and "Targets" not in figures and "MISSED" not in figures
    assert "Targets: " in bench.report(records, options)


@pytest.fixture
def awg_backend():
    import app.sim
    from app.sim.awg import VirtualAwg

    bus = app.sim.VirtualBus()
    bus.plug(VirtualAwg(ingest_bytes_per_s=None, memory_points=1 << 16))
    backend = app.sim.backend(bus)
    with bench.default_backend_for_peers(backend):
        yield backend


def test_the_console_peer_chains_commands_from_each_finished_and_returns_every_reply(awg_backend):
    peer = bench.ConsolePeer(awg_backend)
    try:
        replies = peer.queries("*IDN?", 25)
        assert len(replies) == 25 and len(set(replies)) == 1 and "Virtual AWG" in replies[0]
        # Ids keep counting: each query was its own command, submitted after the last had finished.
        assert peer.session.outstanding == 0
        assert peer.query("SYST:ERR?").startswith("0,")
    finally:
        peer.close()


def test_a_failed_command_stops_the_console_peers_chain_and_names_the_device_error(awg_backend, monkeypatch):
    monkeypatch.setattr(bench, "TIMEOUT_MS", 300)
    peer = bench.ConsolePeer(awg_backend)
    try:
        with pytest.raises(bench.BenchError, match="console: "):
            peer.queries("NO:SUCH:QUERY?", 3)  # the AWG never answers: the read times out
        # The chain stopped at the first failure: the session is usable for the next command.
        assert "Virtual AWG" in peer.query("*IDN?")
    finally:
        peer.close()


def test_replies_unlike_the_first_fail_the_query_measure():
    class Drifting(bench.Peer):
        name = "drifting"
        answers = iter(["A", "A", "A", "B"])

        def query(self, text):
            return next(self.answers)

    with pytest.raises(bench.BenchError, match="1 unlike the first"):
        bench._measure_queries(Drifting(), 3, None, {})


def test_the_untraced_and_the_traced_core_take_turns_in_blocks(monkeypatch):
    """Tracing costs a few per cent, the machine drifts by that much within a second: the two
    cores alternate block by block within a measure instead of running one whole round each."""
    calls = []

    def spying(cls):
        class Spy(cls):
            def uploads(self, message, count):
                calls.append((self.name, "upload", count))
                return super().uploads(message, count)

            def queries(self, text, count):
                calls.append((self.name, "query", count))
                return super().queries(text, count)
        return Spy

    monkeypatch.setattr(bench, "PEERS", {name: spying(cls) for name, cls in bench.PEERS.items()})
    options = bench.BenchOptions(sizes=(64 * KIB,), queries=60, rounds=1,
                                 implementations=(bench.CORE, bench.CORE_TRACED))
    found = bench.run(options)
    queries = [name for name, kind, count in calls if kind == "query" and count == bench.PAIR_QUERY_BLOCK]
    assert len(queries) == 6 and all(a != b for a, b in zip(queries, queries[1:]))
    uploads = [(name, count) for name, kind, count in calls if kind == "upload"][1:]  # the first sizes the blocks
    assert len(uploads) >= 4 and all(a[0] != b[0] for a, b in zip(uploads, uploads[1:]))
    assert len({count for _, count in uploads}) == 1
    assert all(r.verified is not False and len(r.rounds) == 1 for r in found)
    assert {r.implementation for r in found} == {bench.CORE, bench.CORE_TRACED}
