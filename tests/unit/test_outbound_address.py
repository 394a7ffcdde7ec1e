"""Where outbound webhooks may go: the URL's form and the addresses it resolves to."""

from __future__ import annotations

import pytest

from rules.outbound_address import (
    AddressRefused,
    check_addresses,
    check_url_form,
    refused_address,
)
from rules.outbound_retry import DISABLE_AFTER, RETRY_FOR, disable_due, gives_up, retry_delay


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "https://"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https://user@example.com/", "user name or password"),
        ("https://example.com/" + "a" * 2048, "2048"),
        ("https:///nohost", "no host"),
        ("https://example.com:99999/", "not valid"),
        ("https://exa mple.com/", "spaces"),
    ],
)
def test_url_forms_refused(url: str, reason: str) -> None:
    with pytest.raises(AddressRefused, match=reason):
        check_url_form(url)


def test_url_form_gives_host_and_port() -> None:
    assert check_url_form("https://hooks.example.com/calsync") == ("hooks.example.com", 443)
    assert check_url_form("http://127.0.0.1:8080/x") == ("127.0.0.1", 8080)


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "169.254.0.1",
        "fd00:ec2::254",
        "fe80::1",
        "::ffff:169.254.169.254",
        "0.0.0.0",
    ],
)
def test_link_local_and_metadata_addresses_refused(address: str) -> None:
    assert refused_address(address) is not None
    with pytest.raises(AddressRefused, match="resolves to"):
        check_addresses("https://hooks.example.com/", [address])


def test_public_addresses_allowed_over_https() -> None:
    check_addresses("https://hooks.example.com/", ["93.184.216.34", "2606:2800:220:1::1"])


def test_one_bad_address_among_several_refuses() -> None:
    with pytest.raises(AddressRefused):
        check_addresses("https://hooks.example.com/", ["93.184.216.34", "169.254.169.254"])


def test_plain_http_only_to_loopback() -> None:
    check_addresses("http://localhost:8000/", ["127.0.0.1", "::1"])
    with pytest.raises(AddressRefused, match="only to loopback"):
        check_addresses("http://hooks.example.com/", ["93.184.216.34"])
    with pytest.raises(AddressRefused, match="does not resolve"):
        check_addresses("https://hooks.example.com/", [])


def test_backoff_doubles_to_an_hour_and_gives_up_after_a_day() -> None:
    from datetime import UTC, datetime, timedelta

    assert [retry_delay(n) for n in (1, 2, 3)] == [5, 10, 20]
    assert retry_delay(30) == 3600
    assert 4 <= retry_delay(1, jitter=-1) < retry_delay(1, jitter=1) <= 6
    # CALSYNC_OUTBOUND_FIRST_RETRY_SECONDS (tests shorten it): the same doubling from there.
    assert [retry_delay(n, first_delay_seconds=2) for n in (1, 2, 3)] == [2, 4, 8]
    assert retry_delay(30, first_delay_seconds=2) == 3600
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert not gives_up(start, start + RETRY_FOR - timedelta(seconds=1))
    assert gives_up(start, start + RETRY_FOR)
    assert not disable_due(None, start)
    assert disable_due(start, start + DISABLE_AFTER)
    assert not disable_due(start, start + DISABLE_AFTER - timedelta(minutes=1))
