"""A raw-socket WebSocket client for conformance tests: it builds frames
byte by byte (any opcode, RSV bits, mask or none, any length encoding,
fragments), writes them in whatever pieces a test asks for, and reads the
server's frames back as they are on the wire, checking what RFC 6455 asks of
a server's frames (never masked, minimal length encoding)."""

import base64
import hashlib
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, key=None, length_bytes=None):
    """One client frame. `rsv` is RSV1..3 as a 3-bit number; `mask=False`
    sends it unmasked (a protocol error from a client); `length_bytes`
    forces the length encoding (0: 7-bit, 2: 16-bit, 8: 64-bit)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload)
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n < 65536 else 8
    if length_bytes == 0:
        head = bytes([b0, mbit | n])
    elif length_bytes == 2:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4) if key is None else key
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


class Frame:
    __slots__ = ("fin", "opcode", "payload", "rsv")

    def __init__(self, fin, rsv, opcode, payload):
        self.fin, self.rsv, self.opcode, self.payload = fin, rsv, opcode, payload

    @property
    def close_code(self):
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self):
        return self.payload[2:]

    def __repr__(self):
        return "Frame(fin=%s, rsv=%d, opcode=%#x, payload=%r)" % (self.fin, self.rsv, self.opcode, self.payload[:80])


class WsClient:
    """One WebSocket connection, opened with a valid handshake."""

    def __init__(self, port, path="/ws/echo", timeout=10.0, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), host.encode(), port, key)
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during the handshake: %r" % head
            head += chunk
        head, self.pending = head.split(b"\r\n\r\n", 1)
        self.response_head = head
        assert head.startswith(b"HTTP/1.1 101 "), head
        fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
        fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
        assert fields.get(b"sec-websocket-accept") == base64.b64encode(hashlib.sha1(key + GUID).digest()), head

    # -- sending

    def send(self, data, pieces=1, pause=0.0):
        """Writes bytes, in `pieces` writes (1-byte writes for pieces=0),
        with `pause` seconds between them."""
        if pieces == 1:
            self.sock.sendall(data)
            return
        step = 1 if pieces == 0 else max(1, -(-len(data) // pieces))
        for i in range(0, len(data), step):
            self.sock.sendall(data[i : i + step])
            if pause:
                time.sleep(pause)

    def send_frame(self, opcode, payload=b"", **kw):
        pieces = kw.pop("pieces", 1)
        self.send(frame(opcode, payload, **kw), pieces=pieces)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- receiving

    def _fill(self, n, deadline):
        while len(self.pending) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("waited for %d bytes, have %d" % (n, len(self.pending)))
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed with %d bytes pending" % len(self.pending))
            self.pending += chunk

    def recv_frame(self, timeout=None):
        """The server's next frame, checked against RFC 6455 5.1/5.2."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._fill(2, deadline)
        b0, b1 = self.pending[0], self.pending[1]
        assert not b1 & 0x80, "a server frame must not be masked"
        n, at = b1 & 0x7F, 2
        if n == 126:
            self._fill(4, deadline)
            n, at = struct.unpack("!H", self.pending[2:4])[0], 4
            assert n >= 126, "non-minimal 16-bit length %d" % n
        elif n == 127:
            self._fill(10, deadline)
            n, at = struct.unpack("!Q", self.pending[2:10])[0], 10
            assert 65536 <= n < 1 << 63, "bad 64-bit length %d" % n
        self._fill(at + n, deadline)
        payload = self.pending[at : at + n]
        self.pending = self.pending[at + n :]
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, payload)

    def recv_message(self, timeout=None):
        """(opcode, payload) of the next data message, answering nothing;
        control frames met on the way are an error."""
        f = self.recv_frame(timeout)
        assert f.opcode in (TEXT, BINARY) and f.fin and f.rsv == 0, f
        return f.opcode, f.payload

    def expect_close(self, code, timeout=None):
        """The server's next frame is a close with `code` (None: no code),
        then the server closes the TCP connection. Returns the reason."""
        f = self.recv_frame(timeout)
        assert f.opcode == CLOSE and f.fin, f
        assert f.close_code == code, "close code %r, expected %r (%r)" % (f.close_code, code, f.payload)
        reason = f.close_reason.decode("utf-8")  # must be UTF-8 on the wire
        self.expect_eof(timeout)
        return reason

    def expect_eof(self, timeout=None):
        """The server closes the TCP connection, sending nothing more."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        assert not self.pending, "unexpected bytes %r" % self.pending[:80]
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the server kept the connection open")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return
            if not chunk:
                return
            raise AssertionError("unexpected bytes %r" % chunk[:80])

    def expect_silence(self, seconds=0.3):
        """Nothing arrives for a while (and the connection stays open)."""
        assert not self.pending, "unexpected bytes %r" % self.pending[:80]
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except (TimeoutError, socket.timeout):
            return
        raise AssertionError("unexpected %r" % chunk[:80])
