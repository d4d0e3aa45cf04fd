"""What a Redis URL may say (issue 10, defect 7): the database by path or `?db=`, TLS with a
private CA (`ssl_ca_certs`) or without verification (`ssl_cert_reqs=none`) against a real TLS
redis-server; any other option, or a malformed one, is refused at start-up with a message that
names the variable and never the password — not silently ignored."""

from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
import sys
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


async def test_tls_with_a_private_ca_or_without_verification(tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path)
    tls_port = free_port()
    proc = RedisProcess(
        tmp_path,
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(cert),
        "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca),
        "--tls-auth-clients", "no",
    ).start()  # fmt: skip
    base = f"rediss://127.0.0.1:{tls_port}/0"
    try:
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
    finally:
        proc.stop()
