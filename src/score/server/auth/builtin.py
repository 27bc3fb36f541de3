"""The built-in token issuer: ES256 JWTs signed with a key kept in the data directory.

It makes the embedded default secure rather than open: ``score-server token --scopes ...`` mints a
token, the server verifies it with the same key. The key file (mode 0600) is created when the server starts
on a data dir without one; ``token`` only makes one when told which data dir (``--data-dir``), and says so.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from score.server.auth.principal import InvalidToken, Principal, TokenVerifier, token_fingerprint

ISSUER = "score-builtin"
AUDIENCE = "score"
ALGORITHM = "ES256"
KEY_FILE = "keys/token-signing.pem"


class MissingKey(FileNotFoundError):
    """The data dir holds no signing key, and the caller must not make one."""


def _load_or_create_key(data_dir: Path, create: bool = True) -> ec.EllipticCurvePrivateKey:
    path = data_dir / KEY_FILE
    if not create and not path.exists():
        raise MissingKey(f"{path} does not exist")
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise RuntimeError(f"{path} does not hold an EC private key; delete it to make a new one")
        return key
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the server's umask does this; token may not
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)  # first writer wins if two processes race to create the key
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _load_or_create_key(data_dir)


class BuiltinIssuer(TokenVerifier):
    issuer = ISSUER

    def __init__(self, data_dir: Path, create: bool = True) -> None:
        """``create=False`` for ``score-server token``: a key made there would sign tokens no server accepts."""
        self._key = _load_or_create_key(data_dir, create)
        self._public = self._key.public_key()

    def issue(self, scopes: list[str], ttl_seconds: int, subject: str = "score-admin") -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "jti": str(uuid.uuid4()),
            "scope": " ".join(scopes),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the access token has expired; get a new one") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"the access token is not valid ({exc})") from exc
        scope = claims.get("scope", "")
        scopes = frozenset(scope.split()) if isinstance(scope, str) else frozenset()
        return Principal(subject=str(claims["sub"]), scopes=scopes, token_id=token_fingerprint(token))
