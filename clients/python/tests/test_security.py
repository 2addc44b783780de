"""Credentials and TLS against the real server: certificates from the server crate's test tool
examples/gen_certs (rcgen), a password hash from ``esdb passwd``."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
from pathlib import Path
from typing import Tuple

import pytest

from esdb import AsyncClient, Client, NewEvent, RetryPolicy
from esdb_server import EsdbServer, repo_root, server_binary

from conftest import ServerFactory

NO_RETRY = RetryPolicy(base_delay_s=0.05, max_delay_s=0.1, max_retries=0)


def gen_certs_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or repo_root() / "target")
    if not target.is_absolute():
        target = repo_root() / target
    return target / "debug" / "examples" / "gen_certs"


@pytest.fixture
def secure_server(server_factory: ServerFactory, tmp_path: Path) -> Tuple[EsdbServer, ssl.SSLContext]:
    tool = gen_certs_binary()
    if not tool.is_file():
        pytest.skip("examples/gen_certs is not built (run-tests.sh builds it)")
    certs = tmp_path / "certs"
    subprocess.run([str(tool), str(certs)], check=True)
    hashed = subprocess.run(
        [str(server_binary()), "passwd"], input=b"py-pass\n", capture_output=True, check=True
    ).stdout.decode().strip()
    config = tmp_path / "esdb.toml"
    config.write_text(
        f'[[auth.users]]\nname = "py"\npassword_hash = "{hashed}"\n'
        'permissions = { default = ["all"] }\n'
    )
    server = server_factory(
        [
            "--config", str(config),
            "--tls-cert", str(certs / "server.pem"),
            "--tls-key", str(certs / "server.key"),
        ]
    )
    return server, ssl.create_default_context(cafile=str(certs / "ca.pem"))


def test_sync_client_connects_with_tls_and_a_password(
    secure_server: Tuple[EsdbServer, ssl.SSLContext]
) -> None:
    server, context = secure_server
    with Client(server.address, user="py", password="py-pass", tls=context,
                tls_server_hostname="localhost", retry=NO_RETRY) as client:
        assert client.info.auth_required
        result = client.append("py-1", NewEvent("E", {}), "no_stream")
        assert result.last_version == 0
    with pytest.raises(Exception) as refused:
        Client(server.address, user="py", password="wrong", tls=context,
               tls_server_hostname="localhost", retry=NO_RETRY)
    assert "auth_failed" in str(refused.value) or getattr(refused.value, "code", "") == "auth_failed"


def test_async_client_connects_with_tls_and_a_password(
    secure_server: Tuple[EsdbServer, ssl.SSLContext]
) -> None:
    server, context = secure_server

    async def run() -> int:
        client = await AsyncClient.connect(server.address, user="py", password="py-pass",
                                           tls=context, tls_server_hostname="localhost",
                                           retry=NO_RETRY)
        try:
            result = await client.append("py-2", NewEvent("E", {}), "no_stream")
            return result.last_version
        finally:
            await client.close()

    assert asyncio.run(run()) == 0


def test_credentials_must_be_complete() -> None:
    with pytest.raises(ValueError):
        Client("127.0.0.1:1", user="only-a-user")
