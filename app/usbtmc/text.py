"""Program messages as text, for any session that moves messages as bytes.

A session class (the USB :class:`~app.usbtmc.Instrument`, the LAN sessions) provides
``write_raw``, ``write_stream``, ``read_raw`` and ``query_raw`` and the attributes
``encoding``, ``write_termination`` and ``read_termination``; :class:`TextMessages` adds the
text calls on top, the same for every transport.
"""

from __future__ import annotations

from . import ieee488


class TextMessages:
    """``write``, ``write_block``, ``read`` and ``query`` over a session's byte calls."""

    encoding: str
    write_termination: str
    read_termination: str

    def write(self, message: str) -> None:
        """Send a program message, adding the write termination if it is missing."""
        if self.write_termination and not message.endswith(self.write_termination):
            message += self.write_termination
        self.write_raw(message.encode(self.encoding))

    def write_block(self, prefix, payload, *, abort=None, progress=None) -> None:
        """Send ``prefix`` followed by ``payload`` as a definite-length block and the termination.

        The payload is not copied into one big message.
        """
        if isinstance(prefix, str):
            prefix = prefix.encode(self.encoding)
        view = memoryview(payload).cast("B")
        head = bytes(prefix) + ieee488.block_header(len(view))
        tail = self.write_termination.encode(self.encoding)
        total = len(head) + len(view) + len(tail)
        self.write_stream((head, view, tail), total, abort=abort, progress=progress)

    def read(self) -> str:
        """Read a response message as text, without its read termination."""
        return self._decode(self.read_raw())

    def query(self, message: str) -> str:
        """Write ``message`` and read the response as text."""
        if self.write_termination and not message.endswith(self.write_termination):
            message += self.write_termination
        return self._decode(self.query_raw(message.encode(self.encoding)))

    def _decode(self, data: bytes) -> str:
        text = data.decode(self.encoding, errors="backslashreplace")
        if self.read_termination and text.endswith(self.read_termination):
            text = text[: -len(self.read_termination)]
        return text.rstrip("\r") if self.read_termination == "\n" else text
