"""A HiSLIP 1.0 server (IVI-6.1) in synchronized mode for several instruments (``hislip0``, ``hislip1``...).

Each session is a synchronous channel (Initialize, Data/DataEnd, Trigger, DeviceClearComplete)
and an asynchronous one (AsyncInitialize, AsyncMaximumMessageSize, AsyncStatusQuery,
AsyncDeviceClear, AsyncLock/AsyncLockInfo, AsyncRemoteLocalControl; the server sends
AsyncServiceRequest there). Replies carry the MessageID of the message they answer
(IVI-6.1 3.1.2).

Locks are kept per instrument (:class:`_Locks`): one client at a time holds the exclusive
lock, any number the shared lock under one lock string; a request waits up to its timeout for
the lock, and a client's locks go when its connection ends. It arbitrates the locks between
the clients that ask for them; it does not hold back the messages of a client that holds none.

Standard library only.
"""

from __future__ import annotations

import itertools
import socket
import socketserver
import struct
import threading

from app.protocol import hislip
from app.protocol.hislip import ErrorCode, FatalCode, LockControl, LockResponse, MsgType

from .port import MessagePort
from .server import TcpServer
from .vxi11 import recv_exact

VENDOR_ID = b"TC"
MAX_MESSAGE_BYTES = 64 << 20  # what this server accepts per Data message (AsyncMaximumMessageSize)


class _Session:
    def __init__(self, session_id: int, port: MessagePort, sync: socket.socket) -> None:
        self.session_id = session_id
        self.port = port
        self.sync = sync
        self.sync_lock = threading.Lock()
        self.async_sock: socket.socket | None = None
        self.async_lock = threading.Lock()
        self.message_id = hislip.UNKNOWN_MESSAGE_ID  # of the last Data/DataEnd/Trigger received
        self.processed = threading.Condition()  # notified when a DataEnd or Trigger has been handled
        self.client_max_bytes = hislip.DEFAULT_MAX_MESSAGE_BYTES
        self.done = threading.Event()
        self.clearing = threading.Event()
        # A reply went out whose delivery to the application (RMT) the client has not confirmed:
        # MAV stays set for it (IVI-6.1 6.14, the RMT-delivered bit).
        self.reply_undelivered = False

    def send_sync(self, data: bytes) -> None:
        with self.sync_lock:
            self.sync.sendall(data)

    def send_async(self, data: bytes) -> None:
        if self.async_sock is None:
            return
        with self.async_lock:
            self.async_sock.sendall(data)


class _Locks:
    """Who holds one instrument's locks (IVI-6.1 AsyncLock)."""

    def __init__(self) -> None:
        self.exclusive: _Session | None = None
        self.shared: set[_Session] = set()
        self.key = ""  # the lock string the shared holders share

    def grantable(self, session: _Session, key: str) -> bool:
        if self.exclusive not in (None, session):
            return False
        if key:  # shared: under the holders' lock string
            return not self.shared or self.key == key
        # Exclusive: no one else shares the lock, unless the asker does too (VISA's nested locks).
        return session in self.shared or not self.shared

    def holders(self) -> set[_Session]:
        return self.shared | ({self.exclusive} if self.exclusive is not None else set())


class HislipServer:
    """Listens on one TCP port (0: any free one; the standard one is :data:`hislip.PORT`)."""

    def __init__(self, devices: dict[str, MessagePort], host: str = "127.0.0.1", tcp_port: int = 0) -> None:
        self.devices = devices
        self._sessions: dict[int, _Session] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._locks = {id(port): _Locks() for port in devices.values()}
        self._locks_changed = threading.Condition()
        self.server = TcpServer(_Handler, host, tcp_port).start()
        self.server.hislip = self
        self._stop_listening = [port.listen_srq(self._make_listener(port)) for port in devices.values()]

    @property
    def tcp_port(self) -> int:
        return self.server.tcp_port

    def close(self) -> None:
        for stop in self._stop_listening:
            stop()
        self.server.close()
        with self._locks_changed:
            self._locks_changed.notify_all()  # lock requests still waiting give up

    # --- locks ---

    def request_lock(self, session: _Session, key: str, timeout_ms: int) -> LockResponse:
        """Grant ``session`` the exclusive lock (``key`` "") or the shared one under ``key``, waiting
        up to ``timeout_ms`` while another client holds it."""
        locks = self._locks[id(session.port)]
        with self._locks_changed:
            if (not key and locks.exclusive is session) or (key and session in locks.shared):
                return LockResponse.ERROR  # it holds that lock already
            granted = self._locks_changed.wait_for(
                lambda: session.done.is_set() or self.server.closing.is_set() or locks.grantable(session, key),
                timeout=timeout_ms / 1000)
            if not granted or session.done.is_set() or not locks.grantable(session, key):
                return LockResponse.FAILURE
            if key:
                locks.shared.add(session)
                locks.key = key
            else:
                locks.exclusive = session
            return LockResponse.SUCCESS

    def release_lock(self, session: _Session) -> LockResponse:
        """Release ``session``'s exclusive lock, else its shared one."""
        locks = self._locks[id(session.port)]
        with self._locks_changed:
            try:
                if locks.exclusive is session:
                    locks.exclusive = None
                    return LockResponse.SUCCESS
                if session in locks.shared:
                    locks.shared.discard(session)
                    locks.key = locks.key if locks.shared else ""
                    return LockResponse.SUCCESS_SHARED
                return LockResponse.ERROR  # it holds none
            finally:
                self._locks_changed.notify_all()

    def lock_info(self, port: MessagePort) -> tuple[bool, int]:
        """Whether a client holds the exclusive lock, and how many clients hold a lock."""
        locks = self._locks[id(port)]
        with self._locks_changed:
            return locks.exclusive is not None, len(locks.holders())

    def _make_listener(self, port: MessagePort):
        def on_srq(stb: int) -> None:
            with self._lock:
                sessions = [s for s in self._sessions.values() if s.port is port and s.async_sock is not None]
            for session in sessions:
                try:  # IVI-6.1 4.13: AsyncServiceRequest, the status byte in the control code
                    session.send_async(hislip.message(MsgType.ASYNC_SERVICE_REQUEST, stb & 0xFF))
                except OSError:
                    pass
        return on_srq

    def new_session(self, port: MessagePort, sync: socket.socket) -> _Session:
        with self._lock:
            session = _Session(next(self._ids) & 0xFFFF, port, sync)
            self._sessions[session.session_id] = session
            return session

    def session(self, session_id: int) -> _Session | None:
        with self._lock:
            return self._sessions.get(session_id)

    def end(self, session: _Session) -> None:
        session.done.set()
        with self._lock:
            self._sessions.pop(session.session_id, None)
        locks = self._locks[id(session.port)]
        with self._locks_changed:  # a client that goes loses its locks
            if locks.exclusive is session:
                locks.exclusive = None
            locks.shared.discard(session)
            locks.key = locks.key if locks.shared else ""
            self._locks_changed.notify_all()


def _read_message(sock: socket.socket, limit: int) -> tuple[hislip.Header, bytes]:
    header = hislip.unpack(recv_exact(sock, hislip.HEADER.size))
    if header.payload_bytes > limit:
        raise ValueError(f"a payload of {header.payload_bytes} bytes (at most {limit})")
    return header, recv_exact(sock, header.payload_bytes) if header.payload_bytes else b""


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server: HislipServer = self.server.hislip
        try:
            header, payload = _read_message(sock, 256)
        except (ConnectionError, OSError, ValueError):
            return
        if header.msg_type == MsgType.INITIALIZE:
            self._sync(server, sock, header, payload)
        elif header.msg_type == MsgType.ASYNC_INITIALIZE:
            self._async(server, sock, header)
        else:
            _fatal(sock, FatalCode.INVALID_INIT_SEQUENCE, "the first message must be Initialize or AsyncInitialize")

    # --- the synchronous channel ---

    def _sync(self, server: HislipServer, sock: socket.socket, header: hislip.Header, payload: bytes) -> None:
        name = payload.decode("ascii", "replace").strip().lower() or "hislip0"
        port = server.devices.get(name)
        if port is None:
            _fatal(sock, FatalCode.UNIDENTIFIED, f"no instrument at sub-address {name!r}")
            return
        session = server.new_session(port, sock)
        # IVI-6.1 6.2: InitializeResponse: overlap mode 0 (synchronized), our version, the session ID.
        sock.sendall(hislip.message(MsgType.INITIALIZE_RESPONSE, 0,
                                    hislip.PROTOCOL_VERSION << 16 | session.session_id))
        sender = threading.Thread(target=_send_replies, args=(session,), daemon=True, name="hislip replies")
        sender.start()
        try:
            while not self.server.closing.is_set():
                header, payload = _read_message(sock, MAX_MESSAGE_BYTES + hislip.HEADER.size)
                kind = header.msg_type
                if kind in (MsgType.DATA, MsgType.DATA_END):
                    if header.control & 1:  # RMT-delivered
                        session.reply_undelivered = False
                    port.write(payload, kind == MsgType.DATA_END, owner=session)
                    with session.processed:
                        session.message_id = header.parameter
                        session.processed.notify_all()
                elif kind == MsgType.TRIGGER:
                    port.trigger()
                    with session.processed:
                        session.message_id = header.parameter
                        session.processed.notify_all()
                elif kind == MsgType.DEVICE_CLEAR_COMPLETE:
                    port.clear()
                    session.message_id = hislip.UNKNOWN_MESSAGE_ID
                    session.reply_undelivered = False
                    session.clearing.clear()
                    # IVI-6.1 6.12: DeviceClearAcknowledge with the feature setting (synchronized).
                    session.send_sync(hislip.message(MsgType.DEVICE_CLEAR_ACKNOWLEDGE, 0))
                else:
                    session.send_sync(hislip.message(MsgType.ERROR, ErrorCode.UNRECOGNIZED_MESSAGE_TYPE))
        except (ConnectionError, OSError):
            pass
        except ValueError as exc:
            _fatal(sock, FatalCode.BAD_HEADER, str(exc))
        finally:
            server.end(session)
            sender.join(timeout=2)
            port.release(session)

    # --- the asynchronous channel ---

    def _async(self, server: HislipServer, sock: socket.socket, header: hislip.Header) -> None:
        session = server.session(header.parameter & 0xFFFF)
        if session is None or session.async_sock is not None:
            _fatal(sock, FatalCode.INVALID_INIT_SEQUENCE, "AsyncInitialize names no session waiting for it")
            return
        session.async_sock = sock
        session.send_async(hislip.message(MsgType.ASYNC_INITIALIZE_RESPONSE, 0, int.from_bytes(VENDOR_ID, "big")))
        port = session.port
        try:
            while not self.server.closing.is_set() and not session.done.is_set():
                header, payload = _read_message(sock, 1024)
                kind = header.msg_type
                if kind == MsgType.ASYNC_MAXIMUM_MESSAGE_SIZE and len(payload) == 8:
                    session.client_max_bytes = max(hislip.HEADER.size + 1, struct.unpack(">Q", payload)[0])
                    reply = hislip.message(MsgType.ASYNC_MAXIMUM_MESSAGE_SIZE_RESPONSE, 0, 0,
                                           struct.pack(">Q", MAX_MESSAGE_BYTES))
                elif kind == MsgType.ASYNC_STATUS_QUERY:
                    # The query names the last message the client sent; its status includes that
                    # message's effect (IVI-6.1 6.14), which the synchronous channel may still be reading.
                    with session.processed:
                        session.processed.wait_for(lambda: header.parameter in (
                            session.message_id, hislip.UNKNOWN_MESSAGE_ID) or session.done.is_set(), timeout=2)
                    if header.control & 1:  # RMT-delivered
                        session.reply_undelivered = False
                    stb = port.status_byte() | (0x10 if session.reply_undelivered else 0)  # MAV
                    reply = hislip.message(MsgType.ASYNC_STATUS_RESPONSE, stb)
                elif kind == MsgType.ASYNC_DEVICE_CLEAR:
                    session.clearing.set()
                    session.reply_undelivered = False
                    port.clear()
                    reply = hislip.message(MsgType.ASYNC_DEVICE_CLEAR_ACKNOWLEDGE, 0)
                elif kind == MsgType.ASYNC_LOCK and header.control == LockControl.REQUEST:
                    try:
                        key = payload.decode("ascii")
                    except UnicodeDecodeError:
                        key = None
                    if key is None:
                        reply = hislip.message(MsgType.ASYNC_LOCK_RESPONSE, LockResponse.ERROR)
                    else:
                        response = server.request_lock(session, key, header.parameter)
                        if session.done.is_set() or self.server.closing.is_set():
                            break
                        reply = hislip.message(MsgType.ASYNC_LOCK_RESPONSE, response)
                elif kind == MsgType.ASYNC_LOCK and header.control == LockControl.RELEASE:
                    # The release follows the message it names (its parameter), as a status query does.
                    with session.processed:
                        session.processed.wait_for(lambda: header.parameter in (
                            session.message_id, hislip.UNKNOWN_MESSAGE_ID) or session.done.is_set(), timeout=2)
                    reply = hislip.message(MsgType.ASYNC_LOCK_RESPONSE, server.release_lock(session))
                elif kind == MsgType.ASYNC_LOCK:
                    reply = hislip.message(MsgType.ERROR, ErrorCode.UNRECOGNIZED_CONTROL_CODE)
                elif kind == MsgType.ASYNC_LOCK_INFO:
                    exclusive, holders = server.lock_info(port)
                    reply = hislip.message(MsgType.ASYNC_LOCK_INFO_RESPONSE, int(exclusive), holders)
                elif kind == MsgType.ASYNC_REMOTE_LOCAL_CONTROL:
                    reply = hislip.message(MsgType.ASYNC_REMOTE_LOCAL_RESPONSE, 0)
                else:
                    reply = hislip.message(MsgType.ERROR, ErrorCode.UNRECOGNIZED_MESSAGE_TYPE)
                session.send_async(reply)
        except (ConnectionError, OSError):
            pass
        except ValueError as exc:
            _fatal(sock, FatalCode.BAD_HEADER, str(exc))


def _send_replies(session: _Session) -> None:
    """Data messages for each reply, DataEnd for its last bytes, carrying the MessageID (IVI-6.1 6.6)."""
    def taken(_eom: bool) -> None:
        session.reply_undelivered = True  # MAV moves from the output queue to the session

    while not session.done.is_set():
        reply = session.port.read(max(1, session.client_max_bytes - hislip.HEADER.size), 0.5, stop=session.done,
                                  owner=session, taken=taken)
        if reply is None or session.clearing.is_set():
            continue
        data, eom = reply
        kind = MsgType.DATA_END if eom else MsgType.DATA
        try:
            session.send_sync(hislip.pack(kind, 0, session.message_id, len(data)) + data)
        except OSError:
            return


def _fatal(sock: socket.socket, code: int, text: str) -> None:
    try:
        sock.sendall(hislip.message(MsgType.FATAL_ERROR, code, 0, text.encode("ascii", "replace")))
    except OSError:
        pass
