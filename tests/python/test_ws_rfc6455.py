"""WebSocket conformance by RFC 6455 section, in the manner of the Autobahn
test suite: a raw-socket client (ws_raw.py) sends hand-built frames to a real
`ferrocorn -k asgi` serving the echo app (`/ws/echo`), and every check says
what the server must send back and whether (and with which code) it closes.

Gunicorn 27's asgi worker is the reference where the RFC leaves a choice
(close codes it accepts, the reply to a close frame, minimal length
encoding). Where ferrocorn is stricter or earlier on purpose, the test says
so (docs/compatibility.md).

`WS_RFC6455_SERVER=gunicorn pytest tests/python/test_ws_rfc6455.py` runs the
same checks against Gunicorn 27 itself (the fail-fast UTF-8 checks, which
Gunicorn does not do, are skipped then)."""

import os
import threading
import time

import pytest
from helpers import Server
from ws_raw import BINARY, CLOSE, CONT, PING, PONG, TEXT, WsClient, close_payload, frame

APP = "asgi_app:app"
LIMIT = 4096
PROGRAM = os.environ.get("WS_RFC6455_SERVER", "ferrocorn")
fail_fast = pytest.mark.skipif(PROGRAM != "ferrocorn", reason="Gunicorn validates UTF-8 at the end of a message")


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    s = Server(["-k", "asgi", APP], tmp_path_factory.mktemp("ws"), program=PROGRAM)
    try:
        yield s.port
    finally:
        s.stop()


@pytest.fixture(scope="module")
def limited_port(tmp_path_factory):
    s = Server(
        ["-k", "asgi", "--websocket-max-message-size", str(LIMIT), APP],
        tmp_path_factory.mktemp("wslim"),
        program=PROGRAM,
    )
    try:
        yield s.port
    finally:
        s.stop()


@pytest.fixture
def ws(port):
    c = WsClient(port)
    yield c
    c.close()


def echo_ok(ws, payload="still open"):
    """The connection still works: a message is echoed."""
    ws.send_frame(TEXT, payload)
    assert ws.recv_message() == (TEXT, payload.encode())


def fails(ws, code):
    """The server fails the connection: a close frame with `code`, then the
    TCP connection ends (RFC 6455 7.1.7)."""
    ws.expect_close(code)


def echo_then_close(ws, payload, code):
    """A message arrived right before a frame that ends the connection: the
    app got it, but its echo may come too late, after the server's close
    frame, when no data frame may follow (RFC 6455 5.5.1). Autobahn counts
    the echo as optional ("non-strict"), and Gunicorn 27 drops it as well.
    The close must come with `code`, and nothing after it."""
    f = ws.recv_frame()
    if f.opcode != CLOSE:
        assert (f.fin, f.opcode, f.payload) == (True, TEXT, payload), f
        f = ws.recv_frame()
    assert (f.opcode, f.close_code) == (CLOSE, code), f
    ws.expect_eof()


# ---------------------------------------------------------------------------
# 5.2 Base framing, 5.6 Data frames: payload lengths and their encodings
# (Autobahn 1.1, 1.2)


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 300_000])
@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_5_2_payload_lengths_are_echoed(ws, opcode, n):
    payload = b"*" * n if opcode == TEXT else bytes(i % 251 for i in range(n))
    ws.send_frame(opcode, payload)
    assert ws.recv_message() == (opcode, payload)


@pytest.mark.parametrize("n", [125, 126, 65535, 65536])
def test_5_2_payload_written_in_small_pieces(ws, n):
    # Autobahn 1.1.8/1.2.8: the frame arrives a few bytes at a time.
    payload = bytes(i % 256 for i in range(n))
    ws.send(frame(BINARY, payload), pieces=0 if n < 200 else 97)
    assert ws.recv_message() == (BINARY, payload)


def test_5_2_length_with_top_bit_set_fails(ws):
    ws.send(bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + b"\x00\x00\x00\x00")
    fails(ws, 1002)


@pytest.mark.parametrize(
    "n, length_bytes",
    [(5, 2), (125, 2), (5, 8), (65535, 8)],
    ids=["5-in-16bit", "125-in-16bit", "5-in-64bit", "65535-in-64bit"],
)
def test_5_2_non_minimal_length_fails(ws, n, length_bytes):
    # "the minimal number of bytes MUST be used to encode the length";
    # Gunicorn 27 fails the connection with 1002.
    ws.send(frame(BINARY, b"x" * n, length_bytes=length_bytes))
    fails(ws, 1002)


def test_5_2_server_frames_are_unmasked_fin_rsv0(ws):
    # WsClient.recv_frame checks mask bit and minimal length on every frame.
    ws.send_frame(BINARY, b"x" * 70_000)
    f = ws.recv_frame()
    assert (f.fin, f.rsv, f.opcode, len(f.payload)) == (True, 0, BINARY, 70_000)


# ---------------------------------------------------------------------------
# 5.1, 5.3 Masking


def test_5_1_unmasked_client_frame_fails(ws):
    ws.send(frame(TEXT, b"hello", mask=False))
    fails(ws, 1002)


def test_5_1_unmasked_control_frame_fails(ws):
    ws.send(frame(PING, b"hello", mask=False))
    fails(ws, 1002)


def test_5_3_any_masking_key_works(ws):
    for key in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x02\x03\x04"):
        ws.send_frame(TEXT, "masked", key=key)
        assert ws.recv_message() == (TEXT, b"masked")


# ---------------------------------------------------------------------------
# 5.2 Reserved bits (Autobahn 3): no extension is negotiated, so any RSV bit
# fails the connection, whatever the frame.


@pytest.mark.parametrize("rsv", range(1, 8))
@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, CLOSE])
def test_5_2_reserved_bits_fail(ws, opcode, rsv):
    payload = close_payload(1000) if opcode == CLOSE else b"rsv"
    ws.send_frame(opcode, payload, rsv=rsv)
    fails(ws, 1002)


def test_5_2_reserved_bits_after_a_good_message(ws):
    # Autobahn 3.2: the first message is echoed, the bad frame fails the
    # connection, and the ping after it is not answered.
    ws.send(frame(TEXT, "hello") + frame(TEXT, "hello", rsv=2) + frame(PING, b"p"))
    echo_then_close(ws, b"hello", 1002)


def test_5_2_reserved_bits_on_a_continuation(ws):
    ws.send(frame(TEXT, "frag", fin=False) + frame(CONT, "ment", rsv=4))
    fails(ws, 1002)


# ---------------------------------------------------------------------------
# 5.2 Opcodes (Autobahn 4): reserved data (3-7) and control (B-F) opcodes.


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_5_2_reserved_opcodes_fail(ws, opcode):
    ws.send_frame(opcode, b"reserved")
    fails(ws, 1002)


@pytest.mark.parametrize("opcode", [5, 0xD])
def test_5_2_reserved_opcode_after_a_good_message(ws, opcode):
    ws.send(frame(TEXT, "first") + frame(opcode, b"") + frame(PING, b"p"))
    echo_then_close(ws, b"first", 1002)


# ---------------------------------------------------------------------------
# 5.5 Control frames (Autobahn 2): pings answered with the same payload, up
# to 125 bytes, never fragmented.


@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125)), b"\x00\xff\xfe\xfd" * 31 + b"x"])
def test_5_5_2_ping_is_answered_with_its_payload(ws, payload):
    ws.send_frame(PING, payload)
    f = ws.recv_frame()
    assert (f.fin, f.opcode, f.payload) == (True, PONG, payload)


def test_5_5_2_ping_written_byte_by_byte(ws):
    ws.send_frame(PING, b"chopped ping", pieces=0)
    f = ws.recv_frame()
    assert (f.opcode, f.payload) == (PONG, b"chopped ping")


def test_5_5_2_ten_pings_ten_pongs(ws):
    ws.send(b"".join(frame(PING, b"ping %d" % i) for i in range(10)))
    for i in range(10):
        f = ws.recv_frame()
        assert (f.opcode, f.payload) == (PONG, b"ping %d" % i)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_5_5_control_payload_over_125_fails(ws, opcode):
    payload = close_payload(1000, b"r" * 124) if opcode == CLOSE else b"x" * 126
    assert len(payload) == 126
    ws.send_frame(opcode, payload)
    fails(ws, 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_5_5_fragmented_control_frame_fails(ws, opcode):
    payload = close_payload(1000) if opcode == CLOSE else b"frag"
    ws.send(frame(opcode, payload, fin=False) + frame(CONT, b"ment"))
    fails(ws, 1002)


def test_5_5_3_unsolicited_pong_is_ignored(ws):
    ws.send(frame(PONG, b"unsolicited") + frame(PONG, b"") + frame(PONG, b"x" * 125))
    echo_ok(ws)


# ---------------------------------------------------------------------------
# 5.4 Fragmentation (Autobahn 5)


def test_5_4_fragments_make_one_message(ws):
    ws.send(frame(TEXT, "frag", fin=False) + frame(CONT, "men", fin=False) + frame(CONT, "ted"))
    assert ws.recv_message() == (TEXT, b"fragmented")
    ws.send(frame(BINARY, b"\x00\x01", fin=False) + frame(CONT, b"\x02"))
    assert ws.recv_message() == (BINARY, b"\x00\x01\x02")


def test_5_4_empty_fragments(ws):
    ws.send(frame(TEXT, "", fin=False) + frame(CONT, "", fin=False) + frame(CONT, "x", fin=False) + frame(CONT, ""))
    assert ws.recv_message() == (TEXT, b"x")


def test_5_4_fragments_in_separate_writes(ws):
    ws.send_frame(TEXT, "one ", fin=False)
    time.sleep(0.05)
    ws.send_frame(CONT, "two ", fin=False)
    time.sleep(0.05)
    ws.send_frame(CONT, "three")
    assert ws.recv_message() == (TEXT, b"one two three")


def test_5_4_ping_between_fragments_is_answered_first(ws):
    # Autobahn 5.6-5.9: control frames may be injected between fragments;
    # the pong comes before the reassembled message.
    ws.send(frame(TEXT, "frag", fin=False) + frame(PING, b"in between") + frame(CONT, "ment"))
    f = ws.recv_frame()
    assert (f.opcode, f.payload) == (PONG, b"in between")
    assert ws.recv_message() == (TEXT, b"fragment")


def test_5_4_pong_between_fragments_is_ignored(ws):
    ws.send(frame(BINARY, b"ab", fin=False) + frame(PONG, b"x") + frame(CONT, b"cd"))
    assert ws.recv_message() == (BINARY, b"abcd")


def test_5_4_ping_between_fragments_written_apart(ws):
    ws.send_frame(TEXT, "a", fin=False)
    ws.send_frame(PING, b"p", pieces=0)
    f = ws.recv_frame()
    assert (f.opcode, f.payload) == (PONG, b"p")
    ws.send_frame(CONT, "b")
    assert ws.recv_message() == (TEXT, b"ab")


@pytest.mark.parametrize("fin", [True, False])
def test_5_4_continuation_without_a_message_fails(ws, fin):
    ws.send_frame(CONT, b"orphan", fin=fin)
    fails(ws, 1002)


@pytest.mark.parametrize("second", [TEXT, BINARY])
def test_5_4_new_message_inside_a_fragmented_one_fails(ws, second):
    ws.send(frame(TEXT, "frag", fin=False) + frame(second, b"intruder"))
    fails(ws, 1002)


def test_5_4_continuation_after_a_finished_message_fails(ws):
    ws.send(frame(TEXT, "done") + frame(CONT, "late"))
    echo_then_close(ws, b"done", 1002)


def test_5_4_close_between_fragments(ws):
    # The unfinished message is never delivered; the close is answered.
    ws.send(frame(TEXT, "never ", fin=False) + frame(CLOSE, close_payload(1000)))
    assert ws.expect_close(1000) == ""


# ---------------------------------------------------------------------------
# 8.1 UTF-8 handling (Autobahn 6): text is validated incrementally; a frame
# boundary inside a multi-byte character is fine, an invalid sequence fails
# the connection with 1007 as soon as it arrives.

VALID = ["", "κόσμε", "€", "\U0001f600 emoji", "\u07ff\u0800\uffff\U00010000\U0010ffff", "mixed: aé€😀"]


@pytest.mark.parametrize("text", VALID)
def test_8_1_valid_text_is_echoed(ws, text):
    ws.send_frame(TEXT, text)
    assert ws.recv_message() == (TEXT, text.encode())


@pytest.mark.parametrize("text", ["€", "😀", "κόσμε", "aé€😀z"])
def test_8_1_fragment_boundary_inside_a_character(ws, text):
    # Every byte in its own fragment: each boundary but the last splits a
    # character (Autobahn 6.2.3/6.2.4).
    data = text.encode()
    frames = [frame(TEXT, data[:1], fin=len(data) == 1)]
    frames += [frame(CONT, data[i : i + 1], fin=i == len(data) - 1) for i in range(1, len(data))]
    ws.send(b"".join(frames))
    assert ws.recv_message() == (TEXT, data)


def test_8_1_character_split_across_writes_of_one_frame(ws):
    data = "€uro 😀".encode()
    ws.send(frame(TEXT, data), pieces=0)
    assert ws.recv_message() == (TEXT, data)


INVALID = {
    "lone-continuation": b"\x80",
    "overlong-slash": b"\xc0\xaf",
    "overlong-3": b"\xe0\x80\xaf",
    "surrogate": b"\xed\xa0\x80",
    "above-max": b"\xf4\x90\x80\x80",
    "f5-byte": b"\xf5\x80\x80\x80",
    "ff-byte": b"\xff",
    "truncated-then-ascii": b"\xe2\x82a",
}


@pytest.mark.parametrize("bad", list(INVALID.values()), ids=list(INVALID))
def test_8_1_invalid_text_fails_with_1007(ws, bad):
    ws.send_frame(TEXT, b"ok " + bad + b" rest")
    fails(ws, 1007)


@fail_fast
@pytest.mark.parametrize("bad", list(INVALID.values()), ids=list(INVALID))
def test_8_1_invalid_fragment_fails_fast(ws, bad):
    # Autobahn 6.4.1: the invalid bytes come in a first fragment; the
    # message is never finished, and the server must not wait for it.
    # (Gunicorn 27 validates at the end of the message; ferrocorn fails as
    # soon as the bytes arrive.)
    ws.send_frame(TEXT, b"abc" + bad, fin=False)
    fails(ws, 1007)


@fail_fast
def test_8_1_invalid_bytes_in_a_partial_frame_fail_fast(ws):
    # Autobahn 6.4.3/6.4.4: one frame announcing 64 bytes, of which only the
    # first 10 (with the invalid sequence) are sent.
    data = frame(TEXT, b"ab\xed\xa0\x80" + b"c" * 59)
    header = 2 + 4
    ws.send(data[: header + 10])
    fails(ws, 1007)


def test_8_1_message_ending_inside_a_character_fails(ws):
    ws.send(frame(TEXT, "abc€".encode()[:-1], fin=False) + frame(CONT, b""))
    fails(ws, 1007)


def test_8_1_invalid_text_after_a_good_message(ws):
    ws.send(frame(TEXT, "fine") + frame(TEXT, b"\xc3\x28"))
    echo_then_close(ws, b"fine", 1007)


def test_8_1_binary_is_not_validated(ws):
    ws.send_frame(BINARY, b"\xff\xfe\xed\xa0\x80")
    assert ws.recv_message() == (BINARY, b"\xff\xfe\xed\xa0\x80")


# ---------------------------------------------------------------------------
# 5.5.1, 7 Close (Autobahn 7): the reply to a close frame, close codes,
# reasons, and what comes after.


def test_7_close_without_payload_is_answered_1000(ws):
    # 1005 never goes on the wire: a close without a code gets 1000.
    ws.send_frame(CLOSE, b"")
    assert ws.expect_close(1000) == ""


def test_7_close_reply_echoes_code_and_reason(ws):
    ws.send_frame(CLOSE, close_payload(1000, "bye now"))
    assert ws.expect_close(1000) == "bye now"


def test_7_close_with_longest_reason(ws):
    reason = "ü" * 61 + "x"  # 123 bytes: the most a close frame holds
    assert len(reason.encode()) == 123
    ws.send_frame(CLOSE, close_payload(4000, reason))
    assert ws.expect_close(4000) == reason


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]


@pytest.mark.parametrize("code", VALID_CODES)
def test_7_4_valid_close_codes_are_echoed(ws, code):
    # Gunicorn 27 accepts 1000-1014 but the reserved 1004-1006, and
    # 3000-4999 (1012-1014 are registered with IANA).
    ws.send_frame(CLOSE, close_payload(code, "r"))
    assert ws.expect_close(code) == "r"


INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", INVALID_CODES)
def test_7_4_invalid_close_codes_fail(ws, code):
    ws.send_frame(CLOSE, close_payload(code))
    fails(ws, 1002)


def test_5_5_1_close_payload_of_one_byte_fails(ws):
    ws.send_frame(CLOSE, b"\x03")
    fails(ws, 1002)


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xed\xa0\x80", b"\xe2\x82", b"\xc0\xaf"])
def test_7_close_reason_not_utf8_fails_1007(ws, reason):
    ws.send_frame(CLOSE, close_payload(1000, reason))
    fails(ws, 1007)


def test_7_invalid_code_wins_over_invalid_reason(ws):
    ws.send_frame(CLOSE, close_payload(999, b"\xff"))
    fails(ws, 1002)


def test_7_nothing_is_answered_after_the_close(ws):
    # Autobahn 7.1.2-7.1.5: a message, ping or second close after the close
    # frame gets no echo, no pong, no second close.
    ws.send(
        frame(CLOSE, close_payload(1000))
        + frame(TEXT, "after close")
        + frame(PING, b"after close")
        + frame(CLOSE, close_payload(1001))
    )
    assert ws.expect_close(1000) == ""


def test_7_message_then_close_in_one_write(ws):
    ws.send(frame(TEXT, "last words") + frame(CLOSE, close_payload(1000)))
    echo_then_close(ws, b"last words", 1000)


def test_7_close_written_byte_by_byte(ws):
    ws.send(frame(CLOSE, close_payload(3003, "slow")), pieces=0)
    assert ws.expect_close(3003) == "slow"


def test_7_server_close_then_client_reply(port):
    # /ws/close: the app closes with 4001 "bye"; the client answers and the
    # server ends the TCP connection.
    c = WsClient(port, "/ws/close")
    try:
        f = c.recv_frame()
        assert (f.opcode, f.close_code, f.close_reason) == (CLOSE, 4001, b"bye")
        c.send_frame(CLOSE, close_payload(4001))
        c.expect_eof()
    finally:
        c.close()


# ---------------------------------------------------------------------------
# 10.4 Limits: --websocket-max-message-size fails larger messages with 1009.


@pytest.fixture
def lws(limited_port):
    c = WsClient(limited_port)
    yield c
    c.close()


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_10_4_message_at_the_limit_is_echoed(lws, opcode):
    lws.send_frame(opcode, b"m" * LIMIT)
    assert lws.recv_message() == (opcode, b"m" * LIMIT)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_10_4_message_over_the_limit_fails_1009(lws, opcode):
    lws.send_frame(opcode, b"m" * (LIMIT + 1))
    lws.expect_close(1009)


def test_10_4_frame_header_alone_is_enough_to_refuse(lws):
    # The announced length decides: the payload need not arrive.
    lws.send(frame(BINARY, b"m" * (LIMIT * 4))[:14])
    lws.expect_close(1009)


def test_10_4_fragments_count_together(lws):
    half = b"m" * (LIMIT // 2)
    lws.send(frame(BINARY, half, fin=False) + frame(CONT, half))
    assert lws.recv_message() == (BINARY, half * 2)
    lws.send(frame(BINARY, half, fin=False) + frame(CONT, half, fin=False) + frame(CONT, b"!"))
    lws.expect_close(1009)


def test_10_4_control_frames_are_not_counted(lws):
    lws.send(frame(TEXT, b"m" * (LIMIT - 1), fin=False) + frame(PING, b"x" * 125) + frame(CONT, b"m"))
    f = lws.recv_frame()
    assert (f.opcode, f.payload) == (PONG, b"x" * 125)
    assert lws.recv_message() == (TEXT, b"m" * LIMIT)


# ---------------------------------------------------------------------------
# Bursts: more than one read's worth of frames at once.


def test_burst_of_full_size_pings(ws):
    # 3,000 pings of 125 bytes (~400 KiB): many reads, with a control frame
    # cut at nearly every read boundary.
    n = 3000
    wire = b"".join(frame(PING, (b"%05d" % i) * 25) for i in range(n))
    # Written from a thread while the pongs are read: with small socket
    # buffers, writing it all before reading could block both sides.
    writer = threading.Thread(target=ws.sock.sendall, args=(wire,))
    writer.start()
    try:
        for i in range(n):
            f = ws.recv_frame()
            assert (f.opcode, f.payload) == (PONG, (b"%05d" % i) * 25), i
    finally:
        writer.join(30)
    echo_ok(ws)


def test_burst_message_in_one_byte_fragments_of_multibyte_text(ws):
    # 6,000 fragments of one byte each, splitting every character.
    data = ("é€😀" * 667).encode()[:6000]
    data = data[: len(data.decode("utf-8", "ignore").encode())]
    frames = [frame(TEXT, data[:1], fin=False)]
    frames += [frame(CONT, data[i : i + 1], fin=False) for i in range(1, len(data) - 1)]
    frames.append(frame(CONT, data[-1:]))
    ws.send(b"".join(frames))
    assert ws.recv_message() == (TEXT, data)


def test_burst_of_messages_interleaved_with_pings(ws):
    n = 500
    wire = b"".join(frame(TEXT, "m%d" % i) + frame(PING, b"p%d" % i) for i in range(n))
    ws.send(wire)
    pongs, texts = [], []
    while len(pongs) < n or len(texts) < n:
        f = ws.recv_frame()
        (pongs if f.opcode == PONG else texts).append(f.payload)
    assert pongs == [b"p%d" % i for i in range(n)]
    assert texts == [b"m%d" % i for i in range(n)]
