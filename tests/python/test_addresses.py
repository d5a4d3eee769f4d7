"""Bind and syslog addresses: ferrocorn reads them with one parser each
(src/net/bind.rs, src/log/syslog.rs), which Python code reaches through
`ferrocorn._hooks._parse_address` (`cfg.address`) and
`ferrocorn.glogging.parse_syslog_address`. Both must give exactly what
Gunicorn's `util.parse_address` and `glogging.parse_syslog_address` give,
results and errors alike."""

import pytest
from ferrocorn._ferrocorn import parse_address
from ferrocorn._hooks import _parse_address
from ferrocorn.glogging import parse_syslog_address
from gunicorn import glogging as gunicorn_glogging
from gunicorn import util as gunicorn_util


def outcome(parse, *args):
    try:
        return ("ok", parse(*args))
    except Exception as e:
        context = None if e.__suppress_context__ or e.__context__ is None else type(e.__context__).__name__
        return (type(e).__name__, str(e), context)


BINDS = [
    "127.0.0.1:8000",
    "LocalHost:80",
    "example.org",
    "",
    "[::1]:9000",
    "[::]",
    "[::1]",
    "[::1]x",
    "[[::1]:80",
    "x[::1]:81",
    "]:[",
    "[\u00e9]:1",
    "tcp://0.0.0.0:5000",
    "tcp://h:1tcp://x:2",
    "tcp://",
    "unix:/tmp/a.sock",
    "unix:///tmp/a.sock",
    "unix:/a/unix://b",
    "unix:////x",
    "unix:",
    "xunix:/a",
    "fd://3",
    "fd:// 3 ",
    "fd://x",
    "fd://-1",
    "fd://1_0",
    "fd://99999999999999999999",
    "fd://",
    "h: 8_0 ",
    "h:+80",
    "h:\u0661\u0662",
    "h:\u00b2",
    "h:http",
    "host:it's",
    "h:70000",
    "h:1:2",
    "h:",
    "::1",
    "\u00c9XAMPLE.org:1",
    "\u03a3\u0391\u03a3:1",
    "\u0130:1",
]


@pytest.mark.parametrize("netloc", BINDS)
def test_bind_addresses_as_gunicorn(netloc):
    assert outcome(_parse_address, netloc) == outcome(gunicorn_util.parse_address, netloc)


@pytest.mark.parametrize(
    "netloc,default_port",
    [("h", "8125"), ("[::1]", "x"), ("h", 81), ("", "9"), ("h:1", "x"), ("h", "it's")],
)
def test_default_port_as_gunicorn(netloc, default_port):
    theirs = outcome(gunicorn_util.parse_address, netloc, default_port)
    assert outcome(parse_address, netloc, default_port) == theirs


SYSLOGS = [
    "udp://localhost:514",
    "udp://",
    "udp://Log.Example",
    "tcp://[::1]:601",
    "tcp://[::1]",
    "unix:///dev/log",
    "unix:///dev/log#dgram",
    "unix:///dev/log#stream",
    "unix:///dev/log#dgram#x",
    "unix:///a/unix://b",
    "unix://",
    "unix:/dev/log",
    "localhost:514",
    "UDP://h:1",
    "",
    "udp://h:x",
    "udp://h:",
    "udp://h:it's",
    "udp://h:\u00b2",
    "udp://h:\u0661",
    "udp://h:70000",
    "udp://h:1udp://x",
    "udp://h:1:2",
    "udp://[::1]:5:6",
    "udp://h:1]x:2",
    "udp://x[y]",
    "tcp://\u03a3\u0391\u03a3",
]


@pytest.mark.parametrize("addr", SYSLOGS)
def test_syslog_addresses_as_gunicorn(addr):
    assert outcome(parse_syslog_address, addr) == outcome(gunicorn_glogging.parse_syslog_address, addr)


def test_socket_types_are_the_socket_modules():
    import socket

    assert parse_syslog_address("udp://h")[0] is socket.SOCK_DGRAM
    assert parse_syslog_address("tcp://h")[0] is socket.SOCK_STREAM
    assert parse_syslog_address("unix:///dev/log") == (None, "/dev/log")
