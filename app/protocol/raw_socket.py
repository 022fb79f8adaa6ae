"""Where program and response messages end on a raw SCPI socket (IEEE 488.2 over TCP, no framing).

A message ends at a newline (IEEE 488.2 7.5 / 8.5: NL terminates program and response
messages), but not at one inside a quoted string or a definite-length arbitrary block
(488.2 7.7.6, 8.7.9): those pass through, so binary data is safe. An indefinite block
(``#0``) ends at the newline that ends the message. Pure: bytes in, chunks out.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(rb"[\n#\"']")
_QUOTES = {b'"': re.compile(b'"'), b"'": re.compile(b"'")}


class MessageSplitter:
    """Cuts a byte stream into program-message chunks: ``feed`` returns ``(chunk, ends_message)``.

    A chunk that does not end a message is the start of a long one (a block still arriving).
    """

    def __init__(self) -> None:
        self._mode = "text"
        self._quote = b""
        self._digits_needed = 0
        self._digits = bytearray()
        self._block_left = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[bytes, bool]]:
        view = memoryview(data)
        out: list[tuple[bytes, bool]] = []
        start = i = 0
        n = len(view)
        while i < n:
            mode = self._mode
            if mode == "block":
                step = min(self._block_left, n - i)
                i += step
                self._block_left -= step
                if not self._block_left:
                    self._mode = "text"
            elif mode == "quote":
                found = _find(view, self._quote, i)
                if found < 0:
                    i = n
                else:
                    i = found + 1
                    self._mode = "text"
            elif mode == "hash":
                byte = view[i]
                if 0x31 <= byte <= 0x39:  # '#<n>' with n in 1..9: n length digits follow
                    self._digits_needed, self._digits = byte - 0x30, bytearray()
                    self._mode = "length"
                    i += 1
                elif byte == 0x30:  # '#0': indefinite block, ends with the message
                    self._mode = "text"
                    i += 1
                else:  # '#H', '#Q', '#B' non-decimal numbers (488.2 7.7.4): ordinary text
                    self._mode = "text"
            elif mode == "length":
                byte = view[i]
                i += 1
                if not 0x30 <= byte <= 0x39:
                    self._mode = "text"  # not a block header after all; the parser will say so
                    continue
                self._digits.append(byte)
                if len(self._digits) == self._digits_needed:
                    self._block_left = int(self._digits)
                    self._mode = "block" if self._block_left else "text"
            else:
                match = _SPECIAL.search(view, i)
                if match is None:
                    i = n
                    break
                i = match.end()
                char = match.group()
                if char == b"\n":
                    out.append((bytes(view[start:i]), True))
                    start = i
                elif char == b"#":
                    self._mode = "hash"
                else:
                    self._mode, self._quote = "quote", char
        if start < n:
            out.append((bytes(view[start:n]), False))
        return out


_QUOTES = {b'"': re.compile(b'"'), b"'": re.compile(b"'")}


def _find(view: memoryview, quote: bytes, start: int) -> int:
    match = _QUOTES[quote].search(view, start)
    return -1 if match is None else match.start()


def _find(view: memoryview, quote: bytes, start: int) -> int:
    match = _QUOTES[quote].search(view, start)
    return -1 if match is None else match.start()
