"""SPEC 2, client IP: unit tests of security/client_ip.py (the end-to-end side is in test_auth)."""

from __future__ import annotations

import pytest

from openclaw_gateway.security.client_ip import ClientIpResolver


def _resolve(peer: str, trusted=(), real_ip=False, **headers: str) -> str:
    names = {"xff": "X-Forwarded-For", "real": "X-Real-IP"}
    return ClientIpResolver(trusted, real_ip).resolve(
        peer, {names[k]: v for k, v in headers.items()}
    )


def test_no_trusted_proxies_means_the_peer():
    assert _resolve("10.0.0.5", xff="1.2.3.4") == "10.0.0.5"


def test_an_untrusted_peer_is_the_client_whatever_it_forwards():
    assert _resolve("10.0.0.5", trusted=["127.0.0.1"], xff="1.2.3.4") == "10.0.0.5"


def test_a_trusted_peer_forwards_the_client():
    assert _resolve("127.0.0.1", trusted=["127.0.0.1"], xff="1.2.3.4") == "1.2.3.4"


def test_forwarded_for_is_read_right_to_left_skipping_trusted_hops():
    trusted = ["127.0.0.1", "10.0.0.0/8"]
    xff = "6.6.6.6, 1.2.3.4, 10.1.1.1, 10.2.2.2"
    assert _resolve("127.0.0.1", trusted=trusted, xff=xff) == "1.2.3.4"


def test_the_rightmost_untrusted_hop_wins_over_spoofed_left_entries():
    assert _resolve("127.0.0.1", trusted=["127.0.0.1"], xff="9.9.9.9, 5.5.5.5") == "5.5.5.5"


def test_cidr_ranges_are_trusted():
    assert _resolve("172.16.3.4", trusted=["172.16.0.0/12"], xff="8.8.8.8") == "8.8.8.8"


def test_all_hops_trusted_gives_the_leftmost():
    trusted = ["10.0.0.0/8"]
    assert _resolve("10.0.0.1", trusted=trusted, xff="10.0.0.9, 10.0.0.8") == "10.0.0.9"


def test_a_trusted_peer_without_forwarded_for_is_the_client():
    assert _resolve("127.0.0.1", trusted=["127.0.0.1"]) == "127.0.0.1"


def test_a_malformed_hop_stops_the_walk():
    # Nothing left of garbage is believed: with no untrusted hop found, the peer remains.
    assert _resolve("127.0.0.1", trusted=["127.0.0.1"], xff="1.2.3.4, garbage") == "127.0.0.1"


def test_real_ip_is_ignored_without_the_fallback():
    assert _resolve("127.0.0.1", trusted=["127.0.0.1"], real="1.2.3.4") == "127.0.0.1"


def test_real_ip_is_used_with_the_fallback_from_a_trusted_peer():
    assert _resolve("127.0.0.1", trusted=["127.0.0.1"], real_ip=True, real="1.2.3.4") == "1.2.3.4"


def test_real_ip_is_ignored_from_an_untrusted_peer_even_with_the_fallback():
    assert _resolve("10.0.0.5", trusted=["127.0.0.1"], real_ip=True, real="1.2.3.4") == "10.0.0.5"


def test_forwarded_for_wins_over_real_ip():
    resolved = _resolve(
        "127.0.0.1", trusted=["127.0.0.1"], real_ip=True, xff="5.5.5.5", real="1.2.3.4"
    )
    assert resolved == "5.5.5.5"


@pytest.mark.parametrize(
    ("hop", "expected"),
    [
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::2]", "2001:db8::2"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
    ],
)
def test_ipv6_hops_are_normalised(hop, expected):
    assert _resolve("127.0.0.1", trusted=["127.0.0.1"], xff=hop) == expected


def test_an_ipv4_mapped_peer_matches_an_ipv4_trusted_proxy():
    assert _resolve("::ffff:127.0.0.1", trusted=["127.0.0.1"], xff="1.2.3.4") == "1.2.3.4"


def test_ipv6_trusted_proxy_ranges():
    assert _resolve("fd00::5", trusted=["fd00::/8"], xff="2001:db8::7") == "2001:db8::7"
