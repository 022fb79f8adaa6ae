"""Raw SCPI over TCP (the "socket" or port-5025 interface of LXI instruments).

Program messages are cut where :class:`~app.protocol.raw_socket.MessageSplitter` says (at a
newline outside quoted strings and arbitrary blocks); replies are sent as they become ready.

Standard library only.
"""

from __future__ import annotations

import socket
import socketserver
import threading

from app.protocol.raw_socket import MessageSplitter

from .port import MessagePort
from .server import TcpServer

RECV_BYTES = 1 << 20
REPLY_CHUNK_BYTES = 1 << 20


class _Handler(socketserver.BaseRequestHandler):
    server: RawServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        port = self.server.port
        done = threading.Event()
        sender = threading.Thread(target=self._send_replies, args=(sock, port, done), daemon=True,
                                  name="raw-socket replies")
        sender.start()
        splitter = MessageSplitter()
        try:
            while not self.server.closing.is_set():
                try:
                    data = sock.recv(RECV_BYTES)
                except OSError:
                    break
                if not data:
                    break
                for chunk, eom in splitter.feed(data):
                    port.write(chunk, eom, owner=sock)
        finally:
            done.set()
            sender.join(timeout=2)
            port.release(sock)

    def _send_replies(self, sock: socket.socket, port: MessagePort, done: threading.Event) -> None:
        while not done.is_set() and not self.server.closing.is_set():
            reply = port.read(REPLY_CHUNK_BYTES, 0.5, stop=done, owner=sock)
            if reply is None:
                continue
            try:
                sock.sendall(reply[0])
            except OSError:
                return


class RawServer(TcpServer):
    """One instrument's raw SCPI socket."""

    def __init__(self, port: MessagePort, host: str = "127.0.0.1", tcp_port: int = 0) -> None:
        self.port = port
        super().__init__(_Handler, host, tcp_port)
