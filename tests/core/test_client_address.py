"""A client's address: the connection's own, unless a trusted proxy passed the client's."""

from __future__ import annotations

import pytest

from core.client_address import client_address
from core.config import Config, ConfigError

DEFAULT = Config()


@pytest.mark.parametrize(("peer", "header", "expected"), [
    # a proxy on this machine (the default trust) passes the client's address
    ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
    ("::1", "2001:db8::7", "2001:db8::7"),
    ("::ffff:127.0.0.1", "203.0.113.7", "203.0.113.7"),  # loopback on a dual-stack socket
    # anyone else claims what they like: not believed
    ("198.51.100.1", "203.0.113.7", "198.51.100.1"),
    ("10.0.0.5", "127.0.0.1", "10.0.0.5"),
    # a trusted proxy that passes nothing usable: its own address
    ("127.0.0.1", None, "127.0.0.1"),
    ("127.0.0.1", "", "127.0.0.1"),
    ("127.0.0.1", "not an address", "127.0.0.1"),
    ("127.0.0.1", "203.0.113.7:4711", "127.0.0.1"),
    ("127.0.0.1", "2001:DB8::7", "2001:db8::7"),  # written the one way
])
def test_the_header_counts_only_from_a_trusted_proxy(peer: str, header: str | None, expected: str) -> None:
    headers = {} if header is None else {"X-Real-IP": header}
    assert client_address(peer, headers, DEFAULT) == expected


@pytest.mark.parametrize(("chain", "expected"), [
    ("203.0.113.7", "203.0.113.7"),
    # appended to by each proxy: the nearest address that is no proxy of ours is the client
    ("203.0.113.7, 10.1.2.3", "203.0.113.7"),
    ("203.0.113.7, 198.51.100.1", "198.51.100.1"),
    ("198.51.100.99, 203.0.113.7, 10.9.9.9", "203.0.113.7"),
    # what the client wrote itself is left of it and never read
    ("6.6.6.6, 203.0.113.7, 10.9.9.9", "203.0.113.7"),
    # every hop a proxy of ours: the farthest one
    ("10.1.1.1, 10.2.2.2", "10.1.1.1"),
    # garbage stops the walk: the last good hop counts
    ("junk, 10.2.2.2", "10.2.2.2"),
])
def test_a_forwarded_chain_is_read_from_the_nearest_hop(chain: str, expected: str) -> None:
    config = Config(ip_header="X-Forwarded-For", trusted_proxies=Config.from_env(
        {"TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"}).trusted_proxies)
    assert client_address("127.0.0.1", {"x-forwarded-for": chain}, config) == expected


def test_without_an_ip_header_the_connection_address_counts() -> None:
    config = Config(ip_header=None)
    assert client_address("127.0.0.1", {"X-Real-IP": "203.0.113.7"}, config) == "127.0.0.1"


def test_no_peer_address_is_unknown() -> None:
    assert client_address(None, {"X-Real-IP": "203.0.113.7"}, DEFAULT) == "unknown"
    assert client_address("", {}, DEFAULT) == "unknown"


def test_header_lookup_ignores_case() -> None:
    assert client_address("127.0.0.1", {"x-real-ip": "203.0.113.7"}, DEFAULT) == "203.0.113.7"


def test_trusted_proxies_setting() -> None:
    assert [str(n) for n in DEFAULT.trusted_proxies] == ["127.0.0.0/8", "::1/128"]
    parsed = Config.from_env({"TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.10 fd00::/8"}).trusted_proxies
    assert [str(n) for n in parsed] == ["10.0.0.0/8", "192.168.1.10/32", "fd00::/8"]
    assert Config.from_env({"TRUSTED_PROXIES": "none"}).trusted_proxies == ()
    nobody = Config.from_env({"TRUSTED_PROXIES": "none"})
    assert client_address("127.0.0.1", {"X-Real-IP": "203.0.113.7"}, nobody) == "127.0.0.1"
    for bad in ("10.0.0.0/33", "proxy.example", "*"):
        with pytest.raises(ConfigError) as caught:
            Config.from_env({"TRUSTED_PROXIES": bad})
        assert "TRUSTED_PROXIES" in str(caught.value), bad
