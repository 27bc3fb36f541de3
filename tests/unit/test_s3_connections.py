"""The S3 document calls' connections (``S3Connections``) against real sockets on 127.0.0.1: keep-alive and a
connection the store closed while idle, TLS verified against the bundle boto3 would use, HTTPS tunnelled
through a proxy with its credentials, and the settings left to boto3."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from score.server.storage.s3_connections import S3Connections, _tls_context

TIMEOUTS = (5.0, 5.0)


class _Store(ThreadingHTTPServer):
    """Answers every request with 200 and ``path|Host``; counts the connections it accepted. With
    ``close_after_answer`` it closes each connection after one answer without saying so (as a store drops
    a connection that sat idle past its keep-alive time)."""

    daemon_threads = True

    def __init__(self, close_after_answer: bool = False) -> None:
        self.connections = 0
        self.close_after_answer = close_after_answer
        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                store.connections += 1
                super().setup()

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = f"{self.path}|{self.headers.get('Host')}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = store.close_after_answer

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _TunnellingProxy(ThreadingHTTPServer):
    """A forward proxy that offers only CONNECT: it records each request line and Proxy-Authorization, then
    relays bytes both ways."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_CONNECT(self) -> None:
                proxy.seen.append((self.path, self.headers.get("Proxy-Authorization")))
                host, port = self.path.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)))
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                _relay(self.connection, upstream)

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def _relay(one: socket.socket, other: socket.socket) -> None:
    try:
        while True:
            ready, _, _ = select.select([one, other], [], [], 5)
            if not ready:
                return
            for source in ready:
                data = source.recv(65536)
                if not data:
                    return
                (other if source is one else one).sendall(data)
    finally:
        other.close()


def _served(server: ThreadingHTTPServer) -> Iterator[Any]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA): the file is the bundle that trusts it."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "score test store")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "store.pem", folder / "store.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def tls_store(certificate: tuple[Path, Path]) -> Iterator[_Store]:
    store = _Store()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    store.socket = context.wrap_socket(store.socket, server_side=True)
    yield from _served(store)


def _plain(port: int, keep: int = 4) -> S3Connections:
    return S3Connections(f"http://127.0.0.1:{port}", None, {}, None, TIMEOUTS, keep)


def test_connections_are_kept_and_one_the_store_closed_while_idle_is_replaced() -> None:
    for store in _served(_Store()):
        connections = _plain(store.port)
        answers = [connections.exchange("GET", f"/b/k{i}", {"Host": connections.host_header}, b"") for i in range(3)]
        assert [(status, body) for status, _, body in answers] == [
            (200, f"/b/k{i}|127.0.0.1:{store.port}".encode()) for i in range(3)
        ]
        assert store.connections == 1  # one connection, kept between calls
    for store in _served(_Store(close_after_answer=True)):
        connections = _plain(store.port)
        for i in range(3):  # each call finds its kept connection closed: sent again at once on a new one
            status, _, body = connections.exchange("GET", f"/b/k{i}", {"Host": connections.host_header}, b"")
            assert (status, body) == (200, f"/b/k{i}|127.0.0.1:{store.port}".encode())
        assert store.connections == 3


def test_an_endpoint_with_a_path_of_its_own_keeps_it_before_each_key() -> None:
    for store in _served(_Store()):
        connections = S3Connections(f"http://127.0.0.1:{store.port}/s3/", None, {}, None, TIMEOUTS, 4)
        status, _, body = connections.exchange("GET", "/b/k", {"Host": connections.host_header}, b"")
        assert (status, body) == (200, f"/s3/b/k|127.0.0.1:{store.port}".encode())


def test_a_connection_refused_at_once_is_an_oserror_not_retried_forever() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        _plain(port).exchange("GET", "/b/k", {}, b"")


def test_https_is_verified_against_the_bundle_boto3_would_use(
    tls_store: _Store, certificate: tuple[Path, Path]
) -> None:
    endpoint = f"https://127.0.0.1:{tls_store.port}"
    trusted = S3Connections(endpoint, None, {}, _tls_context(str(certificate[0])), TIMEOUTS, 4)
    assert trusted.exchange("GET", "/b/k", {"Host": trusted.host_header}, b"")[::2] == (
        200,
        f"/b/k|127.0.0.1:{tls_store.port}".encode(),
    )
    certifi_only = S3Connections(endpoint, None, {}, _tls_context(True), TIMEOUTS, 4)
    with pytest.raises(ssl.SSLCertVerificationError):
        certifi_only.exchange("GET", "/b/k", {}, b"")
    unverified = S3Connections(endpoint, None, {}, _tls_context(False), TIMEOUTS, 4)
    assert unverified.exchange("GET", "/b/k", {}, b"")[0] == 200


def test_https_through_a_proxy_is_tunnelled_with_the_proxy_credentials(
    tls_store: _Store, certificate: tuple[Path, Path]
) -> None:
    for proxy in _served(_TunnellingProxy()):
        credentials = "Basic " + base64.b64encode(b"user:secret").decode()
        connections = S3Connections(
            f"https://127.0.0.1:{tls_store.port}",
            proxy.url,
            {"Proxy-Authorization": credentials},
            _tls_context(str(certificate[0])),
            TIMEOUTS,
            4,
        )
        for _ in range(2):
            status, _, body = connections.exchange("GET", "/b/k", {"Host": connections.host_header}, b"")
            assert (status, body) == (200, f"/b/k|127.0.0.1:{tls_store.port}".encode())
        assert proxy.seen == [(f"127.0.0.1:{tls_store.port}", credentials)]  # one tunnel, kept


def _client(**config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="key",
        aws_secret_access_key="secret",  # not a secret: no store is reached
        region_name="us-east-1",
        config=Config(signature_version="s3v4", **config),
    )


def test_settings_the_connections_do_not_offer_are_left_to_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    plain = S3Connections.for_client(_client(connect_timeout=3, read_timeout=7, max_pool_connections=12))
    assert plain is not None and plain.host_header == "127.0.0.1:9"
    assert (plain._connect_timeout, plain._read_timeout, plain._keep) == (3.0, 7.0, 12)
    through_http = S3Connections.for_client(_client(proxies={"http": "http://u:p@127.0.0.1:3128"}))
    assert through_http is not None and through_http._proxy_headers["Proxy-Authorization"].startswith("Basic ")
    assert S3Connections.for_client(_client(proxies={"http": "https://127.0.0.1:3128"})) is None
    assert S3Connections.for_client(_client(client_cert="/etc/client.pem")) is None
