"""The HMAC URL signer of the local store: what it covers, and how it refuses."""

from __future__ import annotations

import time

import pytest

from score.server.storage.url_signing import (
    SignatureMismatch,
    UrlExpired,
    UrlSigner,
    canonical_string,
)

SECRET = b"k" * 32
KEY = "data/5b2d1f4e-0000-4000-8000-000000000001"
PARAMS = {"op": "put", "uploadId": "ab" * 16, "partNumber": 3, "offset": 1024, "size": 512}


def _signed(signer: UrlSigner, method: str = "PUT", expires_in: int = 60) -> dict[str, str]:
    return signer.sign(method, KEY, PARAMS, int(time.time()) + expires_in)


def test_sign_returns_params_expiry_and_hex_signature_in_order() -> None:
    query = _signed(UrlSigner(SECRET))
    assert list(query) == [*PARAMS, "expires", "signature"]
    assert query["partNumber"] == "3"
    assert len(query["signature"]) == 64
    int(query["signature"], 16)


def test_verify_accepts_the_signed_query_and_returns_the_signed_params() -> None:
    signer = UrlSigner(SECRET)
    query = _signed(signer)
    params = signer.verify("PUT", KEY, query.items())
    assert "signature" not in params
    assert params["uploadId"] == PARAMS["uploadId"]
    assert params["expires"] == query["expires"]


def test_signature_is_deterministic_and_case_insensitive_hex() -> None:
    signer = UrlSigner(SECRET)
    expires = int(time.time()) + 60
    first = signer.sign("PUT", KEY, PARAMS, expires)
    assert first == signer.sign("PUT", KEY, PARAMS, expires)
    upper = {**first, "signature": first["signature"].upper()}
    signer.verify("PUT", KEY, upper.items())


@pytest.mark.parametrize(
    ("name", "value"),
    [("partNumber", "4"), ("offset", "0"), ("size", "513"), ("uploadId", "cd" * 16), ("op", "get")],
)
def test_any_changed_parameter_breaks_the_signature(name: str, value: str) -> None:
    signer = UrlSigner(SECRET)
    query = {**_signed(signer), name: value}
    with pytest.raises(SignatureMismatch, match="signature does not match"):
        signer.verify("PUT", KEY, query.items())


def test_extended_expiry_breaks_the_signature_rather_than_extending_the_url() -> None:
    signer = UrlSigner(SECRET)
    query = _signed(signer)
    query["expires"] = str(int(query["expires"]) + 86400)
    with pytest.raises(SignatureMismatch):
        signer.verify("PUT", KEY, query.items())


def test_added_parameter_breaks_the_signature() -> None:
    signer = UrlSigner(SECRET)
    query = {**_signed(signer), "range": "0-10"}
    with pytest.raises(SignatureMismatch):
        signer.verify("PUT", KEY, query.items())


def test_duplicated_parameter_is_refused_and_named() -> None:
    signer = UrlSigner(SECRET)
    items = [*_signed(signer).items(), ("partNumber", "3")]
    with pytest.raises(SignatureMismatch, match="'partNumber' appears twice"):
        signer.verify("PUT", KEY, items)


def test_missing_signature_is_refused() -> None:
    signer = UrlSigner(SECRET)
    query = _signed(signer)
    del query["signature"]
    with pytest.raises(SignatureMismatch, match="no signature"):
        signer.verify("PUT", KEY, query.items())


def test_other_key_other_method_or_other_secret_do_not_verify() -> None:
    signer = UrlSigner(SECRET)
    query = _signed(signer)
    with pytest.raises(SignatureMismatch):
        signer.verify("PUT", KEY + ".meta", query.items())
    with pytest.raises(SignatureMismatch):
        signer.verify("GET", KEY, query.items())
    with pytest.raises(SignatureMismatch):
        UrlSigner(b"x" * 32).verify("PUT", KEY, query.items())


def test_a_get_signature_is_valid_for_head() -> None:
    signer = UrlSigner(SECRET)
    query = signer.sign("GET", KEY, {"op": "get", "range": "0-99"}, int(time.time()) + 60)
    assert signer.verify("HEAD", KEY, query.items())["range"] == "0-99"
    assert signer.verify("get", KEY, query.items())["op"] == "get"


def test_expired_url_says_when_and_what_to_do() -> None:
    signer = UrlSigner(SECRET)
    expires_at = int(time.time()) - 5
    query = signer.sign("PUT", KEY, PARAMS, expires_at)
    with pytest.raises(UrlExpired) as caught:
        signer.verify("PUT", KEY, query.items())
    assert caught.value.expired_at == expires_at
    assert str(caught.value).startswith("URL expired at ")
    assert "ask the server for a new URL" in str(caught.value)


def test_expiry_is_checked_against_the_given_clock() -> None:
    signer = UrlSigner(SECRET)
    query = signer.sign("PUT", KEY, PARAMS, 1_000)
    signer.verify("PUT", KEY, query.items(), now=999)
    signer.verify("PUT", KEY, query.items(), now=1_000)
    with pytest.raises(UrlExpired, match=r"1970-01-01T00:16:40\+00:00"):
        signer.verify("PUT", KEY, query.items(), now=1_001)


def test_tampered_and_expired_reports_the_tampering() -> None:
    signer = UrlSigner(SECRET)
    query = signer.sign("PUT", KEY, PARAMS, 1_000)
    query["size"] = "1"
    with pytest.raises(SignatureMismatch):
        signer.verify("PUT", KEY, query.items(), now=5_000)


def test_canonical_string_is_unambiguous_for_awkward_keys() -> None:
    marker = 'upload/x_y/part-0000000b|{"partNumber":11,"md5":"a","etag":"b"}'
    assert canonical_string("GET", "a\nop=get", {}) != canonical_string("GET", "a", {"op": "get"})
    assert canonical_string("GET", "a&b=c", {}) != canonical_string("GET", "a", {"b": "c"})
    assert canonical_string("HEAD", marker, {}) == canonical_string("GET", marker, {})
    assert "\n" not in canonical_string("GET", marker, {"x": "1\n2"}).split("\n", 3)[3]


def test_signer_and_expiry_parameters_are_reserved() -> None:
    signer = UrlSigner(SECRET)
    with pytest.raises(ValueError, match="set by the signer"):
        signer.sign("GET", KEY, {"signature": "x"}, 1)
    with pytest.raises(ValueError, match="set by the signer"):
        signer.sign("GET", KEY, {"expires": "1"}, 1)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 random bytes"):
        UrlSigner(b"short")


def test_non_numeric_expiry_cannot_verify() -> None:
    signer = UrlSigner(SECRET)
    query = {"op": "get", "expires": "soon"}
    query["signature"] = signer._mac("GET", KEY, query)
    with pytest.raises(SignatureMismatch, match="no valid expiry"):
        signer.verify("GET", KEY, query.items())
