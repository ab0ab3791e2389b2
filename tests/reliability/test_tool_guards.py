"""The agent tools' guards under fuzzing: the workspace confines paths, web_fetch refuses addresses.

Workspace (``workspace_list``/``_read``/``_write``, called as the agent loop calls them): paths
drawn from ``..``, absolute and drive paths, ``~``, NUL bytes, and symlinks to outside the
workspace (a folder and a file) and inside it. Every call is refused with a ``ToolError`` or acts
inside the workspace: the folder next to it (with a secret file) is never read, listed or changed,
and a path that the rules refuse (``..``, absolute, NUL, through an outside symlink) is refused.

``web_fetch``: a pure decision test. Addresses from every non-public range (and the same embedded
in IPv6) are refused and public ones are not, by ``refusal``; whole URLs (odd schemes, credentials,
IP spellings: decimal, octal, hex, short, bracketed, zoned) go through ``fetch`` with name
resolution replaced by a numeric-only resolver and a table, and a check that stops the fetch when
an address is allowed: nothing here resolves a name or opens a connection.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openclaw_gateway.agent.tools import web, workspace
from openclaw_gateway.agent.tools.base import ToolError
from tests.reliability.conftest import examples
from tests.reliability.figures import Figures

SECRET = "outside-the-workspace"


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A workspace with symlinks out of it, and the folder next to it that must stay untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    root = tmp_path / "ws"
    (root / "a").mkdir(parents=True)
    (root / "a" / "note.txt").write_text("inside")
    (root / "out").symlink_to(outside)
    (root / "out_file").symlink_to(outside / "secret.txt")
    (root / "a" / "up").symlink_to("../../outside")
    (root / "in").symlink_to("a")
    yield root, outside
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == SECRET


COMPONENTS = ["..", ".", "a", "note.txt", "out", "out_file", "up", "in", "new", "x\x00y", "~", ""]
paths = st.builds(
    lambda lead, parts, sep: lead + sep.join(parts),
    st.sampled_from(["", "", "/", "\\", "~/", "C:", "c:\\", "./"]),
    st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=5),
    st.sampled_from(["/", "/", "//", "\\"]),
)


def _must_refuse(root: Path, path: str) -> bool:
    """The rules, from the outside: NUL, absolute, ``..``, or a real path out of the workspace."""
    if "\x00" in path or path.startswith(("/", "\\", "~")) or path[1:2] == ":":
        return True
    if ".." in path.split("/"):
        return True
    real = os.path.realpath(os.path.join(root, path))
    return not (real == str(root.resolve()) or real.startswith(str(root.resolve()) + os.sep))


@examples(400)
@given(path=paths, op=st.sampled_from(["list", "read", "write", "append"]))
def test_workspace_paths_never_leave_the_workspace(
    tree: tuple[Path, Path], figures: Figures, path: str, op: str
) -> None:
    figures.tried("tools: workspace paths")
    root, outside = tree
    refuse = _must_refuse(root, path)
    try:
        if op == "list":
            out = workspace.list_files(str(root), {"path": path})
        elif op == "read":
            out = workspace.read_file(str(root), {"path": path})
        else:
            out = workspace.write_file(
                str(root), {"path": path, "content": "written", "append": op == "append"}
            )
    except ToolError:
        return
    assert not refuse, f"{op} {path!r} was not refused: {out[:200]!r}"
    assert SECRET not in out and "secret.txt" not in out, (op, path, out[:200])
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == SECRET


# --------------------------------------------------------------------------- web_fetch

NON_PUBLIC = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
    "2001:db8::/32",
]
PUBLIC = ["1.1.1.0/24", "8.8.0.0/16", "93.184.216.0/24", "2606:4700::/32", "2a00:1450::/32"]
METADATA = ["169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "fd00:ec2::254"]


@st.composite
def addresses_in(
    draw: st.DrawFn, networks: list[str]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    net = ipaddress.ip_network(draw(st.sampled_from(networks)))
    return net[draw(st.integers(0, net.num_addresses - 1))]


def _embeddings(ip: ipaddress.IPv4Address) -> list[ipaddress.IPv6Address]:
    """The IPv6 spellings of an IPv4 address: mapped, compatible, NAT64, 6to4."""
    n = int(ip)
    return [
        ipaddress.IPv6Address(f"::ffff:{ip}"),
        ipaddress.IPv6Address(n) if n > 1 else ipaddress.IPv6Address(f"::ffff:{ip}"),
        ipaddress.IPv6Address(f"64:ff9b::{ip}"),
        ipaddress.IPv6Address((0x2002 << 112) | (n << 80)),
    ]


@examples(300)
@given(ip=addresses_in(NON_PUBLIC) | st.sampled_from(METADATA).map(ipaddress.ip_address))
def test_non_public_addresses_are_refused_also_inside_ipv6(
    figures: Figures, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> None:
    figures.tried("tools: non-public addresses")
    assert web.refusal(ip), ip
    assert web.check_address(str(ip)), ip
    if isinstance(ip, ipaddress.IPv4Address):
        for v6 in _embeddings(ip):
            assert web.refusal(v6), (ip, v6)
    else:
        assert web.refusal(ipaddress.IPv6Address(f"{ip}%eth0")), ip


@examples(100)
@given(ip=addresses_in(PUBLIC))
def test_public_addresses_are_allowed(
    figures: Figures, ip: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> None:
    figures.tried("tools: public addresses")
    assert web.refusal(ip) is None, ip


class Allowed(Exception):
    """The check let an address through: the fetch stops here, before any connection."""


# Names the fake resolver knows (nothing else is resolved): a rebinding-style name with one
# public and one private address, a metadata name, and public names.
NAMES: dict[str, list[str]] = {
    "localhost": ["127.0.0.1", "::1"],
    "metadata.google.internal": ["169.254.169.254"],
    "mixed.test": ["93.184.216.34", "10.0.0.1"],
    "public.test": ["93.184.216.34"],
    "public6.test": ["2606:4700::1111"],
}
HOSTS = [
    "127.0.0.1",
    "2130706433",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "127.1",
    "0",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[64:ff9b::a9fe:a9fe]",
    "[2002:7f00:1::]",
    "[fe80::1%25eth0]",
    "169.254.169.254",
    "[fd00:ec2::254]",
    "10.1.2.3",
    "192.168.1.1",
    "localhost",
    "LOCALHOST",
    "metadata.google.internal",
    "mixed.test",
    "public.test",
    "public6.test",
    "unknown.test",
    "",
]
ALLOWED_HOSTS = {"public.test", "public6.test"}
_GETADDRINFO = socket.getaddrinfo


def _resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
    """Resolve numerically or from ``NAMES``; never ask DNS."""
    host = str(host).lower()
    if host in NAMES:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in NAMES[host]
        ]
    return _GETADDRINFO(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)


@examples(300)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "ftp", "file", "gopher", "javascript", ""]),
    userinfo=st.sampled_from(["", "", "user@", "user:pw@", ":@"]),
    host=st.sampled_from(HOSTS),
    port=st.sampled_from(["", "", ":80", ":8080", ":0", ":99999", ":x", ":"]),
    path=st.sampled_from(["", "/", "/a?b=c", "/@evil.test/", "#frag"]),
)
def test_web_fetch_refuses_every_url_to_a_non_public_address(
    monkeypatch: pytest.MonkeyPatch,
    figures: Figures,
    scheme: str,
    userinfo: str,
    host: str,
    port: str,
    path: str,
) -> None:
    figures.tried("tools: web_fetch URLs")
    monkeypatch.setattr(web.socket, "getaddrinfo", _resolve)
    allowed: list[str] = []
    resolve_checked = web.resolve_checked

    def stop_before_connecting(*args: Any) -> str:
        allowed.append(resolve_checked(*args))
        raise Allowed(allowed[-1])

    monkeypatch.setattr(web, "resolve_checked", stop_before_connecting)
    url = f"{scheme}://{userinfo}{host}{port}{path}"
    try:
        web.fetch(url, timeout=1)
    except ToolError:
        assert not allowed
        return
    except Allowed:
        pass
    # An empty userinfo (":@") carries no credentials; the fetch sends none.
    assert scheme.lower() in ("http", "https") and not userinfo.strip(":@"), url
    assert host in ALLOWED_HOSTS, (url, allowed)
    assert all(web.refusal(ipaddress.ip_address(a)) is None for a in allowed), allowed
