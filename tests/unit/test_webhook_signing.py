"""The receivers' verification recipe: sign and verify round-trip, and every way it must fail."""

from __future__ import annotations

from app.webhooks.signing import sign, verify

SECRET = "whsec-test-0123456789"
BODY = b'{"id":"evt_1","type":"dispute.opened","data":{}}'


def test_a_signed_body_verifies() -> None:
    header = sign(SECRET, 1_700_000_000, BODY)
    assert header.startswith("t=1700000000,v1=")
    assert verify(SECRET, header, BODY, now=1_700_000_010)


def test_tampered_body_wrong_secret_old_or_garbled_headers_fail() -> None:
    header = sign(SECRET, 1_700_000_000, BODY)
    assert not verify(SECRET, header, BODY.replace(b"opened", b"closed"), now=1_700_000_000)
    assert not verify("another-secret-0000", header, BODY, now=1_700_000_000)
    assert not verify(SECRET, header, BODY, now=1_700_000_000 + 301)  # replayed later
    assert not verify(SECRET, "garbage", BODY, now=1_700_000_000)
    assert not verify(SECRET, "t=abc,v1=00", BODY, now=1_700_000_000)
    assert not verify(SECRET, header.split(",")[0], BODY, now=1_700_000_000)  # no signature at all
