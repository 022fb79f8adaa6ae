"""What the LAN servers share: a threaded TCP server that closes its live connections when it stops.

Standard library only.
"""

from __future__ import annotations

import socket
import socketserver
import threading


class TcpServer(socketserver.ThreadingTCPServer):
    """A threaded TCP server on ``host``:``tcp_port`` (0: any free port) whose :meth:`close` also
    resets the connections still open, as an instrument that is switched off does."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, handler, host: str = "127.0.0.1", tcp_port: int = 0) -> None:
        self.closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__((host, tcp_port), handler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                                        name=f"{type(self).__name__} :{self.tcp_port}")

    @property
    def tcp_port(self) -> int:
        return self.server_address[1]

    def start(self):
        self._thread.start()
        return self

    def process_request(self, request, client_address) -> None:
        with self._lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close(self) -> None:
        self.closing.set()
        if self._thread.is_alive():
            self.shutdown()
        self.server_close()
        with self._lock:
            live = list(self._connections)
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
