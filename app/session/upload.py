"""The waveform upload as a session command: ``UploadWaveform`` in, ``UploadProgress`` and
``UploadDone`` out (frozen dataclasses), run where the session runs (the GUI's worker thread).

The handler streams the plan through the core (``app.waveforms.run_upload``), batches the
per-transfer progress into at most :data:`EMIT_INTERVAL_S`-spaced events so the GUI never
gets a signal per transfer, then asks the instrument ``*OPC?``, its error queue and the
stored length and CRC-32. Cancel is the command's abort flag: the core checks it between
transfers, which it sizes to last about ``app.waveforms.ABORT_LATENCY_MS``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.usbtmc import errors as tmc_errors
from app.usbtmc import ieee488
from app.waveforms import UploadPlan, UploadResult, check_upload, drain_errors, run_upload

from .events import Command, Event, Progress
from .handlers import CommandContext, register

EMIT_INTERVAL_S = 0.05  # at most 20 progress events a second, each with every transfer since the last


@dataclass(frozen=True)
class UploadWaveform(Command):
    """Send ``plan``'s messages, then check what the instrument made of them (when ``check``)."""

    plan: UploadPlan
    check: bool = True

    def describe(self) -> str:
        return f"waveform upload ({self.plan.total_bytes} bytes)"


@dataclass(frozen=True)
class UploadProgress(Progress):
    """Progress of an upload; ``samples`` holds (elapsed_s, done_bytes) after each transfer since the last event."""

    samples: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class UploadChecking(Event):
    """Every byte is sent; the instrument is being asked about it."""

    seconds: float
    bytes_sent: int


@dataclass(frozen=True)
class UploadAborted(Event):
    """Cancel took effect; ``errors`` is what the instrument's error queue then said about the
    partial message (``problem`` when it could not be asked)."""

    errors: tuple[str, ...]
    problem: str = ""


@dataclass(frozen=True)
class UploadDone(Event):
    """The upload and its checks are over; ``result`` says what the instrument reported."""

    result: UploadResult


def _upload(ctx: CommandContext) -> None:
    cmd: UploadWaveform = ctx.command
    batch: list[tuple[float, int]] = []
    last_emit = [time.perf_counter()]

    def progress(done: int, total: int, elapsed_s: float) -> None:
        batch.append((elapsed_s, done))
        now = time.perf_counter()
        if now - last_emit[0] >= EMIT_INTERVAL_S or done >= total:
            last_emit[0] = now
            ctx.emit(UploadProgress(cmd.id, done, total, elapsed_s, tuple(batch)))
            batch.clear()
            ctx.between_transfers()

    def flush() -> None:
        """Report the transfers done since the last event: figures shown after a cancel are exact."""
        if batch:
            elapsed_s, done = batch[-1]
            ctx.emit(UploadProgress(cmd.id, done, cmd.plan.total_bytes, elapsed_s, tuple(batch)))
            batch.clear()

    try:
        result = run_upload(ctx.instrument, cmd.plan, abort=ctx.abort, progress=progress, check=False,
                            drain_before=cmd.check)
    except tmc_errors.TmcTimeoutError as exc:
        _explain_timeout(ctx.instrument, exc, "before or during the upload")
        raise
    except tmc_errors.AbortedError:
        flush()
        if cmd.plan.template.errors:
            # The session is usable again: ask the instrument what it made of the partial message.
            try:
                ctx.emit(UploadAborted(cmd.id, drain_errors(ctx.instrument)))
            except tmc_errors.DeviceGoneError:
                raise
            except tmc_errors.TmcError as exc:
                ctx.emit(UploadAborted(cmd.id, (), f"the error queue could not be read: {exc}"))
        raise
    ctx.emit(UploadChecking(cmd.id, result.seconds, result.bytes_sent))
    if cmd.check:
        try:
            result = check_upload(ctx.instrument, cmd.plan, result)
        except tmc_errors.TmcTimeoutError as exc:
            _explain_timeout(ctx.instrument, exc, "after the upload")
            raise
    ctx.emit(UploadDone(cmd.id, result))


ESR_ERRORS = {"CME": "a command error", "EXE": "an execution error", "DDE": "a device-dependent error",
              "QYE": "a query error"}


def _explain_timeout(instrument, exc: tmc_errors.TmcTimeoutError, when: str) -> None:
    """A query that got no answer is often the instrument refusing what it was sent: an
    instrument without an error queue flags CME and stays silent. When ``*ESR?`` shows an
    error bit, raise that instead of the bare timeout (IEEE 488.2 11.5.1)."""
    try:
        value = ieee488.parse_register_value(instrument.query("*ESR?"))
    except (tmc_errors.TmcError, ValueError):
        return  # ESR cannot be read either: the timeout is all there is to say
    flagged = [name for name in ieee488.set_bit_names(value, ieee488.ESR_BITS) if name in ESR_ERRORS]
    if not flagged:
        return
    what = " and ".join(f"{ESR_ERRORS[name]} ({name})" for name in flagged)
    raise tmc_errors.TmcError(
        f"the instrument reported {what} {when} (*ESR? {value}): it did not accept "
        f"{'the waveform command' if when.startswith('after') else 'what it was sent'}, "
        f"and a query then got no answer ({exc.args[0] if exc.args else exc})"
    ) from exc


register(UploadWaveform, _upload)
