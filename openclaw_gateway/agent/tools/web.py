"""``web_fetch``: GET a public http(s) URL, never an address inside the host's networks.

The host name is resolved once; if *any* of its addresses is refused by ``refusal`` (loopback,
private, link-local, multicast, reserved, unspecified, shared/CGNAT, cloud metadata, and the same
for IPv4 addresses embedded in IPv6: mapped ``::ffff:a.b.c.d``, compatible ``::a.b.c.d``, NAT64,
6to4) the fetch is refused. The connection then goes to the checked address itself (the ``Host``
header and TLS SNI/certificate check still use the name), so a second DNS answer cannot swap in
another address. Redirects are followed by hand, each target checked the same way. The body is
cut at ``MAX_BYTES`` and the whole fetch at ``TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Callable
from html import unescape
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3

from ..types import CancelToken
from .base import ToolError, string_arg

MAX_BYTES = 512 * 1024
MAX_TEXT = 64 * 1024
TIMEOUT_SECONDS = 15.0
CONNECT_TIMEOUT_SECONDS = 5.0
MAX_REDIRECTS = 3
USER_AGENT = "openclaw-gateway web_fetch"

DESCRIPTION = "Fetch a public web page (http or https) and return its text."
PARAMETERS = {
    "type": "object",
    "properties": {"url": {"type": "string", "description": "an http:// or https:// URL"}},
    "required": ["url"],
    "additionalProperties": False,
}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "fd00:ec2::254")
)
# IETF protocol assignments (RFC 6890): not globally reachable, but only part of the block is
# in Python's private list on some 3.11 releases (192.0.0.8 counted as global there).
_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    packed = ip.packed
    if ip in _NAT64 or (packed[:12] == bytes(12) and int(ip) > 1):
        return ipaddress.IPv4Address(packed[12:])
    return None


def refusal(ip: IPAddress) -> str | None:
    """Why ``web_fetch`` must not connect to ``ip``, or None when it is a public address.

    A pure decision: it never opens a connection or resolves anything.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "scoped IPv6 address"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = refusal(embedded)
            return f"{reason} (embedded in IPv6)" if reason else None
    if ip in _METADATA:
        return "cloud metadata address"
    if ip in _PROTOCOL_ASSIGNMENTS:
        return "reserved address"
    for reason, hit in (
        ("unspecified address", ip.is_unspecified),
        ("loopback address", ip.is_loopback),
        ("link-local address", ip.is_link_local),
        ("multicast address", ip.is_multicast),
        ("private address", ip.is_private),
        ("reserved address", ip.is_reserved),
    ):
        if hit:
            return reason
    if not ip.is_global:
        return "non-public address"
    return None


def check_address(address: str) -> str | None:
    """``refusal`` for an address string; an unparsable one is refused."""
    try:
        return refusal(ipaddress.ip_address(address))
    except ValueError:
        return "not an IP address"


def resolve_checked(
    host: str, port: int, check: Callable[[str], str | None] = check_address
) -> str:
    """Resolve ``host`` once and return the address to connect to; refuse if any is refused."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ToolError(f"cannot resolve host '{host[:100]}'") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ToolError(f"cannot resolve host '{host[:100]}'")
    for address in addresses:
        reason = check(address)
        if reason:
            raise ToolError(f"refused: {host[:100]} resolves to a {reason}")
    return addresses[0]


def _split(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ToolError("only http:// and https:// URLs can be fetched")
    if parts.username or parts.password:
        raise ToolError("URLs with credentials are refused")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ToolError("invalid port in URL") from None
    host = parts.hostname or ""
    if not host:
        raise ToolError("the URL has no host")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port, target


_TAGS = re.compile(r"<(script|style|noscript)\b.*?</\1\s*>|<[^>]+>", re.S | re.I)
_BLANKS = re.compile(r"[ \t\r\f\v]+")
_LINES = re.compile(r"\n\s*\n+")


def _text(body: bytes, content_type: str) -> str:
    charset = "utf-8"
    match = re.search(r"charset=([\w.-]+)", content_type, re.I)
    if match:
        charset = match.group(1)
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    if "html" in content_type.lower():
        text = unescape(_TAGS.sub(" ", text))
        text = _LINES.sub("\n\n", _BLANKS.sub(" ", text)).strip()
    return text


def fetch(
    url: str,
    cancel: CancelToken | None = None,
    *,
    check: Callable[[str], str | None] = check_address,
    max_bytes: int = MAX_BYTES,
    timeout: float = TIMEOUT_SECONDS,
) -> str:
    """GET ``url`` under the rules above; return ``HTTP <status> <type>`` then the text."""
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        scheme, host, port, target = _split(url)
        address = resolve_checked(host, port, check)
        host_header = host if port in (80, 443) else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if port in (80, 443) else f"[{host}]:{port}"
        left = deadline - time.monotonic()
        if left <= 0:
            raise ToolError("the fetch timed out")
        pool_kwargs: dict[str, Any] = {
            "timeout": urllib3.Timeout(connect=min(CONNECT_TIMEOUT_SECONDS, left), read=left),
            "retries": False,
            "maxsize": 1,
        }
        pool: urllib3.HTTPConnectionPool
        if scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                address, port, server_hostname=host, assert_hostname=host, **pool_kwargs
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, port, **pool_kwargs)
        try:
            response = pool.urlopen(
                "GET",
                target,
                headers={"Host": host_header, "User-Agent": USER_AGENT, "Accept": "*/*"},
                redirect=False,
                preload_content=False,
                assert_same_host=False,
            )
            try:
                if response.status in (301, 302, 303, 307, 308) and response.headers.get(
                    "location"
                ):
                    url = urljoin(url, response.headers["location"])
                    continue
                body = bytearray()
                for chunk in response.stream(65536):
                    body += chunk
                    if cancel is not None and cancel.is_set():
                        raise ToolError("cancelled")
                    if len(body) >= max_bytes or time.monotonic() > deadline:
                        break
                truncated = len(body) >= max_bytes
                content_type = response.headers.get("content-type", "")
                status = response.status
            finally:
                response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            kind = "timed out" if "timed out" in str(exc).lower() else "failed"
            raise ToolError(f"the fetch {kind}") from None
        finally:
            pool.close()
        return _render(status, content_type, bytes(body[:max_bytes]), truncated)
    raise ToolError(f"too many redirects (more than {MAX_REDIRECTS})")


def _render(status: int, content_type: str, body: bytes, truncated: bool) -> str:
    kind = content_type.split(";", 1)[0].strip().lower()
    head = f"HTTP {status} {kind or 'unknown type'}"
    textual = not kind or kind.startswith("text/") or kind.endswith(("json", "xml", "javascript"))
    if not textual:
        return f"{head}\n[binary content, {len(body)} bytes, not shown]"
    text = _text(body, content_type)
    if truncated or len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "\n[truncated]"
    return f"{head}\n{text}"


def web_fetch(args: dict[str, Any], cancel: CancelToken) -> str:
    """The tool: ``{"url"}`` → the page's text."""
    url = string_arg(args, "url").strip()
    if len(url) > 4096:
        raise ToolError("URL too long")
    return fetch(url, cancel)
