"""``tmc query`` on the resource strings ``tmc sim serve --lan`` prints."""

from __future__ import annotations

import subprocess
import sys

from app.cli import main


def test_tmc_query_gets_the_sam7_idn_over_each_printed_resource(capsys):
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "sim", "serve", "--lan", "--any-port", "--until-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = [proc.stdout.readline().rstrip("\n").split("\t") for _ in range(9)]
        sam7 = [(res, protocol) for res, protocol, label in lines if "SAM7" in label]
        assert [protocol for _, protocol in sam7] == ["SOCKET", "VXI-11", "HiSLIP"]
        for res, _protocol in sam7:
            assert main(["query", res, "*IDN?", "--timeout-ms", "3000"]) == 0
            assert capsys.readouterr().out.startswith("XYZ Company Ltd, SAM7-EK"), res
            assert main(["stb", res]) == 0
            assert capsys.readouterr().out.startswith("STB 0x")
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_tmc_query_on_a_port_nobody_listens_on_says_so_in_one_line(capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["query", f"TCPIP::127.0.0.1::{port}::SOCKET", "*IDN?"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused" in err and str(port) in err
