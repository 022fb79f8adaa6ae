"""Saves never destroy the file they replace: a write that fails part-way (here a file-size
limit, RLIMIT_FSIZE, as a full disk or a quota would) leaves the old file as it was and says
why in one line."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.usbtmc.errors import SaveError
from app.usbtmc.files import save_bytes, save_text

ROOT = Path(__file__).resolve().parents[2]
OLD_ENTRY = textwrap.dedent("""\
    # my quirks: a long comment so the file is near the size limit of the test
    [[quirk]]
    name = "My scope"
    vid = 0x1AB1
    pid = 0x044D
    reason = "I want to see its stale bTags"
    source = "me"
    [quirk.flags]
    tolerate_stale_btag = false
    """)


def _limited(limit_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


def _run_limited(args: list[str], limit_bytes: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, preexec_fn=_limited(limit_bytes))


def test_save_replaces_the_file_and_keeps_its_mode(tmp_path):
    target = tmp_path / "reply.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    assert save_bytes(target, b"new data") == target
    assert target.read_bytes() == b"new data" and (target.stat().st_mode & 0o777) == 0o640
    assert os.listdir(tmp_path) == ["reply.bin"]  # no temporary file left behind


def test_a_failed_save_keeps_the_old_file(tmp_path):
    target = tmp_path / "transcript.txt"
    target.write_text("precious\n")

    def broken(stream):
        stream.write(b"half of it")
        raise OSError(28, "No space left on device")

    from app.usbtmc.files import save_with

    with pytest.raises(SaveError) as caught:
        save_with(target, broken)
    assert str(caught.value) == f"cannot save {target}: the disk is full; the file there is unchanged"
    assert target.read_text() == "precious\n" and os.listdir(tmp_path) == ["transcript.txt"]
    with pytest.raises(SaveError, match="nothing was written"):
        save_text(tmp_path / "missing-dir" / "x.txt", "x")


def test_a_file_size_limit_keeps_the_old_file(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"x" * 1000)
    code = (f"from app.usbtmc.files import save_bytes\n"
            f"save_bytes({str(target)!r}, b'y' * 100_000)\n")
    result = _run_limited(["-c", code], 4096)
    assert result.returncode != 0 and "the file would exceed the size limit; the file there is unchanged" in result.stderr
    assert target.read_bytes() == b"x" * 1000 and os.listdir(tmp_path) == ["data.bin"]


def test_tmc_probe_save_quirks_under_a_size_limit_keeps_the_users_entries(tmp_path):
    # The user's own entry turns off the flag the probe suggests, so the save has something to write.
    quirks_file = tmp_path / "quirks.toml"
    old = OLD_ENTRY + "#" * (3000 - len(OLD_ENTRY)) + "\n"
    quirks_file.write_text(old)
    result = _run_limited(["-m", "app.cli", "probe", "--sim", "--timeout-ms", "300",
                           "USB0::0x1AB1::0x044D::DHO8A000000001::INSTR", "--save-quirks",
                           "--quirks-file", str(quirks_file)], len(old) // 2)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"tmc: cannot save {quirks_file}: the file would exceed the size limit; the file there is unchanged"
    assert quirks_file.read_text() == old and os.listdir(tmp_path) == ["quirks.toml"]
