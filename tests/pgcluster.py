"""A private PostgreSQL cluster for tests that restart a server or terminate backends.

Such tests never touch the machine's own server: this module makes a cluster of its own
(``initdb`` in a temporary folder, a free port, a socket in that folder), and the fixture
stops it and removes it afterwards. As root, the server's tools run as the ``postgres``
user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import missing_service


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    roots = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    return roots[-1] if roots and (roots[-1] / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Cluster:
    bindir: Path
    data: Path
    port: int
    as_user: list[str]

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    async def new_database(self) -> str:
        """A fresh, empty database on this cluster, for one test."""
        import asyncpg

        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')  # a name of hex digits only
        finally:
            await conn.close()
        return self.database_url(name)

    def ctl(self, *args: str, timeout: float = 120) -> None:
        command = [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        subprocess.run(command, check=True, timeout=timeout, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=on"
        self.ctl("-w", "-l", str(self.data / "server.log"), "-o", options, "start")

    def restart_immediately(self) -> None:
        """As a crash would: no checkpoint, clients cut off; then up again."""
        self.ctl("-w", "-m", "immediate", "stop")
        self.start()

    def stop(self) -> None:
        self.ctl("-w", "-m", "immediate", "stop")


def _make(root: Path) -> Cluster:
    bindir = _bindir()
    if bindir is None:
        missing_service("a private PostgreSQL cluster needs the server's tools (initdb, pg_ctl)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            missing_service("running initdb as root needs a 'postgres' user to run it as")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    cluster = Cluster(bindir, data, _free_port(), as_user)
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        timeout=120,
        capture_output=True,
    )
    cluster.start()
    return cluster


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[Cluster]:
    """One private cluster for the session's server-fault tests, stopped at the end."""
    root = Path(tempfile.mkdtemp(prefix="sagaline-pg-"))
    root.chmod(0o755)
    cluster = _make(root)
    try:
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
