"""Store refusals reach the user as a reason, never with the signature S3 echoes back."""

from __future__ import annotations

from score.client.transfer.data import UrlExpired, _store_error_from


def test_s3_signature_errors_keep_code_and_message_only() -> None:
    body = (
        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SignatureDoesNotMatch</Code>"
        b"<Message>The request signature we calculated does not match</Message>"
        b"<StringToSign>AWS4-HMAC-SHA256 secret-ish</StringToSign><SignatureProvided>abc123sig</SignatureProvided>"
        b"</Error>"
    )
    error = _store_error_from(403, body, "part 1")
    assert isinstance(error, UrlExpired)
    assert "SignatureDoesNotMatch" in str(error) and "does not match" in str(error)
    assert "abc123sig" not in str(error) and "secret-ish" not in str(error)


def test_json_messages_are_used_as_they_are() -> None:
    error = _store_error_from(400, b'{"message": "BadDigest: part 2 arrived damaged"}', "part 2")
    assert error.status == 400 and str(error) == "part 2: the store answered 400 BadDigest: part 2 arrived damaged"
