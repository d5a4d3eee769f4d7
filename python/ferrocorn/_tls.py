"""The ``ssl_context`` server hook under ferrocorn, whose TLS is rustls.

Gunicorn calls ``ssl_context(config, default_ssl_context_factory)`` and
uses the ``ssl.SSLContext`` it returns. ferrocorn hands the hook a
:class:`ContextRecorder` instead: it answers the calls and attributes
server-side code uses on a context (load a certificate chain, CA
certificates, the client-certificate mode, the TLS versions, a cipher list,
ALPN), and remembers them, and the server builds its rustls configuration
from what was recorded. Anything else the hook tries is refused with its
name, which stops the start: nothing is silently ignored.
"""

from __future__ import annotations

import ssl
from typing import Any, Callable

# What a ContextRecorder can be told, as ssl spells it.
_VERSIONS = {ssl.TLSVersion.TLSv1_2: "TLSv1_2", ssl.TLSVersion.TLSv1_3: "TLSv1_3"}
# The ALPN protocols the engine speaks (h2 too when http_protocols has it).
_ALPN_SERVED = ("http/1.1", "http/1.0")
# Options with nothing to do under rustls: the protocols and features they
# turn off are not offered anyway (SSLv2/3, TLS 1.0/1.1, compression,
# renegotiation, ...), or the behaviour is rustls' own (server preference).
_OPTIONS_WITHOUT_EFFECT = (
    ssl.OP_NO_SSLv2
    | ssl.OP_NO_SSLv3
    | ssl.OP_NO_TLSv1
    | ssl.OP_NO_TLSv1_1
    | ssl.OP_NO_COMPRESSION
    | ssl.OP_CIPHER_SERVER_PREFERENCE
    | ssl.OP_SINGLE_DH_USE
    | ssl.OP_SINGLE_ECDH_USE
    | ssl.OP_NO_RENEGOTIATION
    | ssl.OP_NO_TICKET
    | getattr(ssl, "OP_ENABLE_MIDDLEBOX_COMPAT", 0)
    | getattr(ssl, "OP_NO_ENCRYPT_THEN_MAC", 0)
    | getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    | getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0)
    | getattr(ssl, "OP_ALL", 0)
)


class UnsupportedContextCall(NotImplementedError):
    """The hook used a part of SSLContext that rustls cannot do."""


class ContextRecorder:
    """A stand-in for the ``ssl.SSLContext`` the ``ssl_context`` hook gets."""

    _FIELDS = (
        "certfile",
        "keyfile",
        "ca_files",
        "ca_pem",
        "system_cas",
        "verify_mode",
        "minimum_version",
        "maximum_version",
        "ciphers",
        "alpn",
        "_options",
        "check_hostname",
        "_alpn_served",
    )

    def __init__(self, given: dict[str, Any]) -> None:
        record = {
            "certfile": given.get("certfile"),
            "keyfile": given.get("keyfile"),
            "ca_files": list(given.get("ca_files") or ()),
            "ca_pem": [],
            "system_cas": bool(given.get("system_cas")),
            "verify_mode": ssl.VerifyMode(given.get("verify_mode", 0)),
            "minimum_version": None,
            "maximum_version": None,
            "ciphers": given.get("ciphers"),
            "alpn": list(given.get("alpn") or ()),
            "_options": ssl.OP_NO_SSLv2 | ssl.OP_NO_SSLv3 | ssl.OP_NO_COMPRESSION,
            "check_hostname": False,
            "_alpn_served": tuple(given.get("alpn_served") or _ALPN_SERVED),
        }
        object.__setattr__(self, "_record", record)

    def __getattr__(self, name: str) -> Any:
        record = object.__getattribute__(self, "_record")
        if name in record and not name.startswith("_"):
            return record[name]
        raise UnsupportedContextCall("ssl_context hook: SSLContext.%s is not supported by ferrocorn (rustls)" % name)

    def __setattr__(self, name: str, value: Any) -> None:
        setter = getattr(type(self), "_set_" + name, None)
        if setter is None:
            raise UnsupportedContextCall(
                "ssl_context hook: setting SSLContext.%s is not supported by ferrocorn (rustls)" % name
            )
        setter(self, value)

    # -- what a server-side hook does to a context

    def load_cert_chain(self, certfile: str, keyfile: str | None = None, password: Any = None) -> None:
        if password is not None:
            raise UnsupportedContextCall(
                "ssl_context hook: load_cert_chain(password=...) is not supported: use an unencrypted key file"
            )
        self._record["certfile"] = str(certfile)
        self._record["keyfile"] = None if keyfile is None else str(keyfile)

    def load_verify_locations(self, cafile: str | None = None, capath: str | None = None, cadata: Any = None) -> None:
        if capath is not None:
            raise UnsupportedContextCall(
                "ssl_context hook: load_verify_locations(capath=...) is not supported: pass cafile"
            )
        if cafile is not None:
            self._record["ca_files"].append(str(cafile))
        if cadata is not None:
            if not isinstance(cadata, str):
                raise UnsupportedContextCall("ssl_context hook: cadata must be PEM text (DER bytes are not supported)")
            self._record["ca_pem"].append(cadata)

    def load_default_certs(self, purpose: Any = None) -> None:
        self._record["system_cas"] = True

    def set_default_verify_paths(self) -> None:
        self._record["system_cas"] = True

    def set_ciphers(self, ciphers: str) -> None:
        self._record["ciphers"] = str(ciphers)

    def set_alpn_protocols(self, protocols: list[str]) -> None:
        protocols = [str(p) for p in protocols]
        # h2 only when --http-protocols serves HTTP/2: a client that
        # negotiated it would otherwise speak HTTP/2 to the HTTP/1 engine.
        served = self._record["_alpn_served"]
        unserved = [p for p in protocols if p not in served]
        if unserved:
            raise UnsupportedContextCall(
                "ssl_context hook: ALPN protocol(s) %s are not served by ferrocorn (it offers %s)"
                % (", ".join(unserved), ", ".join(served))
            )
        self._record["alpn"] = protocols

    @property
    def options(self) -> int:
        return self._record["_options"]

    def _set_options(self, value: int) -> None:
        value = int(value)
        unknown = value & ~_OPTIONS_WITHOUT_EFFECT & ~(ssl.OP_NO_TLSv1_2 | ssl.OP_NO_TLSv1_3)
        if unknown:
            raise UnsupportedContextCall("ssl_context hook: SSLContext.options bits %#x are not supported" % unknown)
        if value & ssl.OP_NO_TLSv1_2:
            self._record["minimum_version"] = "TLSv1_3"
        if value & ssl.OP_NO_TLSv1_3:
            self._record["maximum_version"] = "TLSv1_2"
        self._record["_options"] = value

    def _set_verify_mode(self, value: Any) -> None:
        self._record["verify_mode"] = ssl.VerifyMode(value)

    def _set_check_hostname(self, value: Any) -> None:
        # A client-side check: a server never verifies a hostname.
        self._record["check_hostname"] = bool(value)

    def _set_minimum_version(self, value: Any) -> None:
        self._record["minimum_version"] = self._version(value, "minimum_version")

    def _set_maximum_version(self, value: Any) -> None:
        self._record["maximum_version"] = self._version(value, "maximum_version")

    @staticmethod
    def _version(value: Any, what: str) -> str | None:
        if value in (ssl.TLSVersion.MINIMUM_SUPPORTED, ssl.TLSVersion.MAXIMUM_SUPPORTED):
            return None
        if value not in _VERSIONS:
            raise UnsupportedContextCall(
                "ssl_context hook: %s %r is not available (rustls has TLS 1.2 and 1.3)" % (what, value)
            )
        return _VERSIONS[value]

    def recorded(self) -> dict[str, Any]:
        r = dict(self._record)
        r["verify_mode"] = int(r["verify_mode"])
        return r


def run_hook(hook: Callable[..., Any], cfg: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Calls the ``ssl_context`` hook as Gunicorn does and returns what the
    context it handed back was told."""

    def default_ssl_context_factory() -> ContextRecorder:
        return ContextRecorder(given)

    context = hook(cfg, default_ssl_context_factory)
    if not isinstance(context, ContextRecorder):
        raise TypeError(
            "ssl_context must return the context default_ssl_context_factory() made (got %r): "
            "ferrocorn serves TLS with rustls, not with Python's ssl" % (context,)
        )
    return context.recorded()
