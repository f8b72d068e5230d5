"""fusionlab's production topology on one machine, for tests: PostgreSQL with password authentication, an S3-compatible
server with a bucket, and a real `mlflow server` on both (backend store in PostgreSQL, artifacts proxied to the
bucket). Each listens on a free port of 127.0.0.1, is started here and stopped by its PID; leaving one of its
processes or ports behind fails the test that used it.

The context managers (``postgres_cluster``, ``s3_server``, ``mlflow_on``) start one of each for a block; the
session fixtures (``production_postgres``, ``production_s3``, ``production_mlflow``, registered by tests/conftest.py)
share one set among the tests that ask. ``production_s3_env`` puts the bucket's fake credentials and endpoint in the
environment for one test; a Ray started after that (its workers inherit the environment) reaches the bucket through
pyarrow as a cluster's nodes do.

The S3 server is moto's standalone server run as a subprocess (``moto_server``), not ``ThreadedMotoServer`` in this
process: it is a separate endpoint reached over HTTP like a real one, it keeps serving while this process is busy or
blocked (its threads would share the test's GIL), forked processes do not inherit a copy of it, and it is stopped by
its PID like every other server here.

No secret is printed or put in a URI: the PostgreSQL password reaches the MLflow server as ``PGPASSWORD`` (libpq reads
it; the backend URI names only the user), the role's password is sent to the server as a SCRAM verifier, and the
dataclasses leave their secrets out of their ``repr`` (pytest prints fixtures' values in failure reports).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ray_head import BIN, free_ports
from tracking.mlflow_server import fetch, log_tail, mlflow_server_process, stop_group

HOST = "127.0.0.1"
POSTGRES_GLOB = "/usr/lib/postgresql/*/bin/initdb"  # Debian's layout (apt-get install postgresql)
REQUIRE_POSTGRES_ENV = "FUSIONLAB_REQUIRE_POSTGRES"
ARTIFACTS_PREFIX = "mlartifacts"  # the MLflow server's --artifacts-destination is s3://<bucket>/mlartifacts


# ---------------------------------------------------------------------------------------------------------- processes

def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, which nobody may have reaped yet, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def group_pids(pgid: int) -> list[int]:
    """The running processes of process group ``pgid`` (a server started with ``start_new_session``)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                pids.append(int(stat.parent.name))
    return pids


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((HOST, port)) == 0


def listen_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on ``port`` (/proc/net/tcp and tcp6), e.g. {"127.0.0.1"}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(_address(address))
    return found


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))  # four host-order 32-bit words
    return socket.inet_ntop(socket.AF_INET6, words)


def wait_until(predicate, timeout: float, what: str, step: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:.0f} s")
        time.sleep(step)


def assert_stopped(name: str, pids: list[int], port: int, timeout: float = 30) -> None:
    """Every one of ``pids`` gone and ``port`` closed (within ``timeout``: a process may take a moment to exit)."""
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not any(map(alive, pids)) and not listening(port), timeout, "")
    left = [pid for pid in pids if alive(pid)]
    assert not left, f"{name}: processes left running: {left}"
    assert not listening(port), f"{name}: port {port} still open"


# --------------------------------------------------------------------------------------------------------- PostgreSQL

def postgres_bin() -> Path | None:
    """The bin directory of the newest PostgreSQL installed Debian's way, or None."""
    found = [Path(path).parent for path in glob.glob(POSTGRES_GLOB)]
    found.sort(key=lambda bin_dir: int(bin_dir.parent.name) if bin_dir.parent.name.isdigit() else 0)
    return found[-1] if found else None


def require_postgres() -> Path:
    """PostgreSQL's bin directory; a skip where it is missing, a failure where FUSIONLAB_REQUIRE_POSTGRES=1 (CI)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        reason = f"PostgreSQL is not installed (no {POSTGRES_GLOB}: apt-get install postgresql)"
        if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_POSTGRES_ENV}=1 demands it")
        pytest.skip(reason)
    return bin_dir


@dataclasses.dataclass(frozen=True)
class Postgres:
    port: int
    pid: int  # the postmaster's
    user: str
    password: str = dataclasses.field(repr=False)
    database: str
    superuser_password: str = dataclasses.field(repr=False)
    log: Path

    @property
    def uri(self) -> str:
        """The database's SQLAlchemy URI, without the password: clients give it as ``PGPASSWORD`` (``env``). The
        driver is named: SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, 2.0 as psycopg2."""
        return f"postgresql+psycopg2://{self.user}@{HOST}:{self.port}/{self.database}"

    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}

    def connect(self, password: str | None = None, **kwargs):
        """A psycopg2 connection to the database over TCP (password authentication: scram-sha-256)."""
        import psycopg2

        return psycopg2.connect(host=HOST, port=self.port, user=self.user, dbname=self.database,
                                password=self.password if password is None else password, connect_timeout=30, **kwargs)

    @property
    def secrets(self) -> tuple[str, str]:
        return self.password, self.superuser_password


@contextlib.contextmanager
def postgres_cluster(bin_dir: Path, user: str = "fusionlab", database: str = "mlflow",
                     startup_s: float = 120) -> Iterator[Postgres]:
    """A private PostgreSQL cluster in a temp dir on a free port of 127.0.0.1 (no TCP elsewhere; its Unix socket in
    the temp dir): password authentication (scram-sha-256) for TCP, a role ``user`` with a random password owning
    ``database``. Stopped with ``pg_ctl stop``, else by its postmaster's PID. The server refuses to run as root: as
    root, initdb and pg_ctl run as the ``postgres`` user, who owns the temp dir."""
    # Under /tmp, short: postgres must reach it (pytest's tmp dirs are private to root), and a Unix socket's path has
    # a length limit.
    root = Path(tempfile.mkdtemp(prefix="fl-pg-", dir="/tmp"))
    data, sockets, log = root / "data", root / "run", root / "postgres.log"  # log: the server's (pg_ctl -l)
    tools_log = root / "tools.log"  # initdb's and pg_ctl's output
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    port = free_ports(1)[0]
    password, superuser_password = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    pid = None
    try:
        sockets.mkdir()
        pwfile = root / "superuser.pw"
        pwfile.write_text(superuser_password + "\n")
        pwfile.chmod(0o600)
        if as_owner:
            for path in (root, sockets, pwfile):
                shutil.chown(path, "postgres", "postgres")
        _run(as_owner + [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
                         "-E", "UTF8", "--auth-local=peer", "--auth-host=scram-sha-256", "--no-sync"], tools_log)
        pwfile.unlink()
        # Appended and overwritten in place: the files keep their owner.
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '{HOST}'\nport = {port}\nunix_socket_directories = '{sockets}'\n"
                       "password_encryption = 'scram-sha-256'\n"
                       # a throwaway cluster: no fsync (a loaded machine's disk is slow enough)
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        (data / "pg_hba.conf").write_text("local all postgres peer\n"
                                          f"host all all {HOST}/32 scram-sha-256\n")
        # -w: pg_ctl polls until the server accepts connections, up to -t seconds
        _run(as_owner + [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", str(int(startup_s)),
                         "start"], tools_log, timeout=startup_s + 30, server_log=log)
        pid = int((data / "postmaster.pid").read_text().split()[0])
        _create_role_and_database(port, superuser_password, user, password, database)
        yield Postgres(port=port, pid=pid, user=user, password=password, database=database,
                       superuser_password=superuser_password, log=log)
    finally:
        if data.exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                _run(as_owner + [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"],
                     tools_log, timeout=90, check=False)
        if pid is not None and alive(pid):  # pg_ctl did not stop it: by its PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
    assert_stopped("postgres", [pid], port)  # reached only when the block did not raise


def _run(command: list[str], log: Path, timeout: float = 120, check: bool = True,
         server_log: Path | None = None) -> None:
    """``command`` with its output appended to ``log`` (the tools print no secret: the password is in a file); a
    failure shows the tail of ``log`` and of the ``server_log``."""
    with open(log, "ab") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if check and result.returncode != 0:
        server = f"\nserver log:\n{log_tail(server_log)}" if server_log else ""
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}:\n{log_tail(log)}{server}")


def _create_role_and_database(port: int, superuser_password: str, user: str, password: str, database: str) -> None:
    import psycopg2
    from psycopg2 import sql
    from psycopg2.extensions import encrypt_password

    with contextlib.closing(psycopg2.connect(host=HOST, port=port, user="postgres", password=superuser_password,
                                             dbname="postgres", connect_timeout=30)) as connection:
        connection.autocommit = True  # CREATE DATABASE runs outside a transaction
        verifier = encrypt_password(password, user, connection, "scram-sha-256")  # the server never sees the password
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user),
                                                                             sql.Literal(verifier)))
            cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database),
                                                                         sql.Identifier(user)))


# ----------------------------------------------------------------------------------------------------------------- S3

@dataclasses.dataclass(frozen=True)
class S3:
    endpoint: str
    port: int
    pid: int
    bucket: str
    access_key: str
    secret_key: str = dataclasses.field(repr=False)
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """What every process that reaches the bucket needs: fake credentials, and the endpoint for boto3 and pyarrow
        (``AWS_ENDPOINT_URL``: Ray's storage) and for MLflow's S3 artifact repository (``MLFLOW_S3_ENDPOINT_URL``)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint,
                "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
                "AWS_EC2_METADATA_DISABLED": "true"}  # no instance-metadata lookups on a machine that has none

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name=self.region)

    def keys(self, prefix: str = "") -> list[str]:
        """The bucket's object keys under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@contextlib.contextmanager
def s3_server(workdir: Path, bucket: str = "fusionlab", startup_s: float = 120) -> Iterator[S3]:
    """moto's S3 server (a subprocess: see the module's docstring) on a free port of 127.0.0.1 with ``bucket``
    created; its log in ``workdir``. Any credentials are accepted: these are random, the secret one never shown."""
    port = free_ports(1)[0]
    log_path = Path(workdir) / "moto-server.log"
    endpoint = f"http://{HOST}:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(BIN / "moto_server"), "-H", HOST, "-p", str(port)], stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {process.returncode}:\n{log_tail(log_path)}")
            try:
                return fetch(f"{endpoint}/", timeout=5)[0] == 200  # ListBuckets
            except OSError:
                return False

        wait_until(answers, startup_s, f"moto_server not answering on {endpoint}:\n{log_tail(log_path)}")
        s3 = S3(endpoint=endpoint, port=port, pid=process.pid, bucket=bucket, access_key="fusionlab-test",
                secret_key=secrets.token_hex(20))
        s3.client().create_bucket(Bucket=bucket)
        yield s3
    finally:
        stop_group(process)
    assert_stopped("moto_server", [process.pid], port)


# ------------------------------------------------------------------------------------------------------------- MLflow

@dataclasses.dataclass(frozen=True)
class MlflowServer:
    url: str  # the tracking URI: http://127.0.0.1:PORT
    port: int
    pid: int
    log: Path
    artifacts: str  # its --artifacts-destination, s3://<bucket>/mlartifacts


@contextlib.contextmanager
def mlflow_on(postgres: Postgres, s3: S3, workdir: Path, startup_s: float = 240) -> Iterator[MlflowServer]:
    """A real `mlflow server` (tests/tracking/mlflow_server.py) with its backend store in ``postgres`` and its
    artifacts in ``s3``'s bucket under ``mlartifacts/``, served through it (``mlflow-artifacts:``): its clients need
    no S3 credentials. Its first start creates MLflow's schema in the database."""
    workdir = Path(workdir)
    artifacts = f"s3://{s3.bucket}/{ARTIFACTS_PREFIX}"
    args = ["--backend-store-uri", postgres.uri, "--artifacts-destination", artifacts, "--serve-artifacts"]
    log = workdir / "mlflow-server.log"
    pids = []
    with mlflow_server_process(args, log, cwd=workdir, env={**postgres.env(), **s3.env()},
                               startup_s=startup_s) as (process, url):
        pids = [process.pid, *group_pids(process.pid)]  # the CLI and its uvicorn worker
        yield MlflowServer(url=url, port=int(url.rsplit(":", 1)[1]), pid=process.pid, log=log, artifacts=artifacts)
    assert_stopped("mlflow server", pids, int(url.rsplit(":", 1)[1]))


# ----------------------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def production_postgres() -> Iterator[Postgres]:
    with postgres_cluster(require_postgres()) as postgres:
        yield postgres


@pytest.fixture(scope="session")
def production_s3(tmp_path_factory) -> Iterator[S3]:
    with s3_server(tmp_path_factory.mktemp("s3")) as s3:
        yield s3


@pytest.fixture(scope="session")
def production_mlflow(production_postgres, production_s3, tmp_path_factory) -> Iterator[MlflowServer]:
    with mlflow_on(production_postgres, production_s3, tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@pytest.fixture
def production_s3_env(production_s3, monkeypatch) -> S3:
    """The bucket's credentials and endpoint in this process's environment for one test (a Ray started in it
    inherits them)."""
    for name, value in production_s3.env().items():
        monkeypatch.setenv(name, value)
    return production_s3
