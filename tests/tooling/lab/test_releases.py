"""The lab's stand-in releases: reproducible artifacts that really do what they claim.

The build tests check the artifacts the install steps fetch. The behaviour tests unpack
the tarballs the way the program installs them and run the stand-ins for real: zpack-api
against a MariaDB and a Redis started here on loopback, zpack-portal, and zlh-agent on
``lo``. Missing binaries fail the tests with the Debian package to install; nothing is
skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.tooling.lab.releases import RELEASES, SOURCE_DIR, TARBALL_RELEASES, build_release

# Binaries the behaviour tests run, and the Debian package that provides each.
DEBIAN_PACKAGES = {
    "node": "nodejs",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client",
    "redis-server": "redis-server",
    "tar": "tar",
    "python3": "python3",
}
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

STARTUP_TIMEOUT = 20.0
MARIADB_STARTUP_TIMEOUT = 60.0
POLL = 0.05
EX_CONFIG = 78


# --------------------------------------------------------------------------------------
# Helpers


def require(binary: str) -> str:
    """The path of a binary the tests need; fails (never skips) naming its Debian package."""
    package = DEBIAN_PACKAGES[binary]
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN_DIRS])
    found = shutil.which(binary, path=search)
    if found is None:
        pytest.fail(
            f"{binary} not found: install the Debian package {package} "
            f"(apt-get install -y {package})",
            pytrace=False,
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def base_env() -> dict[str, str]:
    """A clean environment, as systemd gives a service: nothing but PATH."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def can_connect(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def get(host: str, port: int, path: str, timeout: float = 15.0) -> tuple[int, str, str]:
    """GET path; (status, content type, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode()
        return response.status, response.getheader("Content-Type", ""), body
    finally:
        conn.close()


def get_json(host: str, port: int, path: str) -> tuple[int, dict[str, Any]]:
    status, content_type, body = get(host, port, path)
    assert content_type.startswith("application/json"), (content_type, body)
    parsed = json.loads(body)
    assert isinstance(parsed, dict), body
    return status, parsed


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on port, from /proc/net/tcp{,6}."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state = fields[1], fields[3]
                address, port_hex = local.split(":")
                if state != "0A" or int(port_hex, 16) != port or len(address) != width:
                    continue
                raw = bytes.fromhex(address)
                if width == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}", pytrace=False)
        time.sleep(POLL)


@dataclass
class Process:
    """A child process with its output in files, stopped at the end of the test."""

    name: str
    popen: subprocess.Popen[bytes]
    log_dir: Path

    def output(self) -> str:
        parts = []
        for stream in ("stdout", "stderr"):
            text = (self.log_dir / f"{self.name}.{stream}").read_text(errors="replace")
            parts.append(f"--- {self.name} {stream} ---\n{text}")
        return "\n".join(parts)

    def stderr(self) -> str:
        return (self.log_dir / f"{self.name}.stderr").read_text(errors="replace")

    def wait_listening(self, host: str, port: int, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not can_connect(host, port, timeout=0.5):
            code = self.popen.poll()
            if code is not None:
                pytest.fail(f"{self.name} exited with {code} before listening\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not listening on {host}:{port}\n{self.output()}")
            time.sleep(POLL)

    def wait_exit(self, timeout: float = STARTUP_TIMEOUT) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout:g} s\n{self.output()}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def spawn(name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> Process:
    log_dir.mkdir(parents=True, exist_ok=True)
    with (
        (log_dir / f"{name}.stdout").open("wb") as out,
        (log_dir / f"{name}.stderr").open("wb") as err,
    ):
        popen = subprocess.Popen(
            argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    return Process(name, popen, log_dir)


Spawn = Callable[[str, list[str], Mapping[str, str]], Process]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Spawn]:
    """Start processes for one test; all of them are stopped when it ends."""
    started: list[Process] = []

    def _start(name: str, argv: list[str], env: Mapping[str, str]) -> Process:
        process = spawn(f"{name}-{len(started)}", argv, env, tmp_path / "logs")
        started.append(process)
        return process

    yield _start
    for process in started:
        process.stop()


# --------------------------------------------------------------------------------------
# Release artifacts


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_build_is_reproducible(name: str, tmp_path: Path) -> None:
    first, first_sha = build_release(name, tmp_path / "one")
    second, second_sha = build_release(name, tmp_path / "two")
    assert first.name == second.name
    assert first.read_bytes() == second.read_bytes()
    assert first_sha == second_sha == hashlib.sha256(first.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(TARBALL_RELEASES))
def test_tarball_layout(name: str, tmp_path: Path) -> None:
    path, _ = build_release(name, tmp_path)
    assert path.name == f"{name}-{RELEASES[name]}.tar.gz"
    data = path.read_bytes()
    assert data[:2] == b"\x1f\x8b"
    assert data[3] & 0x08 == 0, "gzip header must not carry a file name"
    assert data[4:8] == b"\0\0\0\0", "gzip header must carry mtime 0"
    with tarfile.open(path, "r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["package.json", "server.js"]
        for member in members:
            assert member.isfile(), member.name
            assert (member.mode, member.uid, member.gid, member.mtime) == (0o644, 0, 0, 0)
        package_file = tar.extractfile("package.json")
        assert package_file is not None
        package = json.load(package_file)
    assert package["name"] == name
    assert package["version"] == RELEASES[name]
    assert package["main"] == "server.js"
    assert package.get("dependencies", {}) == {}


def test_agent_artifact_is_the_executable(tmp_path: Path) -> None:
    path, sha = build_release("zlh-agent", tmp_path)
    assert path.name == "zlh-agent"
    assert path.stat().st_mode & 0o777 == 0o755
    assert path.read_bytes() == (SOURCE_DIR / "zlh-agent" / "zlh-agent").read_bytes()
    assert path.read_bytes().startswith(b"#!/usr/bin/python3\n")
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()


def test_unknown_release_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown release"):
        build_release("zpack-nothing", tmp_path)


@pytest.mark.parametrize(
    "source", ["zpack-api/server.js", "zpack-portal/server.js", "zlh-agent/zlh-agent"]
)
def test_sources_say_they_are_stand_ins(source: str) -> None:
    header = (SOURCE_DIR / source).read_text()[:3000]
    assert "stand-in release for the local LXC lab" in header
    assert "The real release must provide" in header


# --------------------------------------------------------------------------------------
# Installed releases, laid out as the program installs them


@pytest.fixture(scope="session")
def node() -> str:
    return require("node")


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Release name -> the file systemd runs: /opt/<name>/current/server.js, the agent."""
    tar = require("tar")
    root = tmp_path_factory.mktemp("install")
    paths: dict[str, Path] = {}
    for name, version in RELEASES.items():
        artifact, _ = build_release(name, root / "artifacts")
        if name in TARBALL_RELEASES:
            release_dir = root / "opt" / name / "releases" / version
            release_dir.mkdir(parents=True)
            subprocess.run([tar, "-xzf", str(artifact), "-C", str(release_dir)], check=True)
            current = root / "opt" / name / "current"
            current.symlink_to(release_dir)
            paths[name] = current / "server.js"
        else:
            paths[name] = artifact
    return paths


# --------------------------------------------------------------------------------------
# MariaDB and Redis on loopback


@dataclass
class MariaDB:
    base: Path
    port: int
    database: str = "zpack"
    user: str = "zpack"
    password: str = field(default_factory=lambda: "db-" + secrets.token_urlsafe(18))
    process: Process | None = None

    @property
    def socket_path(self) -> Path:
        return self.base / "s"

    def _client(self, statement: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run one statement through the socket, as the account of the OS user running us."""
        argv = [require("mariadb"), "--no-defaults", f"--socket={self.socket_path}"]
        return subprocess.run(
            [*argv, "-u", os_user(), "-e", statement],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def sql(self, statement: str) -> None:
        result = self._client(statement, timeout=30)
        assert result.returncode == 0, f"mariadb client failed: {result.stderr}"

    def _answers(self) -> bool:
        return self.socket_path.exists() and self._client("SELECT 1", timeout=10).returncode == 0

    def start(self) -> None:
        user = os_user()
        argv = [
            require("mariadbd"),
            "--no-defaults",
            f"--datadir={self.base / 'data'}",
            f"--socket={self.socket_path}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--user={user}",
            f"--pid-file={self.base / 'mariadbd.pid'}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=16M",
        ]
        self.process = spawn("mariadbd", argv, base_env(), self.base / "logs")
        deadline = time.monotonic() + MARIADB_STARTUP_TIMEOUT
        while not (self._answers() and can_connect("127.0.0.1", self.port)):
            code = self.process.popen.poll()
            if code is not None:
                pytest.fail(f"mariadbd exited with {code}\n{self.process.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"mariadbd did not start\n{self.process.output()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=60)
            self.process = None


def os_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    base = tmp_path_factory.mktemp("mariadb")
    db = MariaDB(base=base, port=free_port())
    install = subprocess.run(
        [
            require("mariadb-install-db"),
            "--no-defaults",
            f"--datadir={base / 'data'}",
            "--auth-root-authentication-method=socket",
            f"--user={os_user()}",
            "--skip-test-db",
            "--skip-name-resolve",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert install.returncode == 0, f"mariadb-install-db failed:\n{install.stdout}{install.stderr}"
    try:
        db.start()
        # Administration goes through the socket, as the OS user (unix_socket auth); the
        # API's account is a password account on TCP. `other` is a database
        # that account has no rights on.
        db.sql(
            "DROP USER IF EXISTS ''@'localhost';"
            f"CREATE DATABASE {db.database};"
            f"CREATE USER '{db.user}'@'127.0.0.1'"
            f" IDENTIFIED VIA mysql_native_password USING PASSWORD('{db.password}');"
            f"GRANT ALL ON {db.database}.* TO '{db.user}'@'127.0.0.1';"
            "CREATE DATABASE other;"
        )
        yield db
    finally:
        db.stop()


@dataclass
class Redis:
    port: int
    password: str = field(default_factory=lambda: "redis-" + secrets.token_urlsafe(18))


def redis_answers(port: int, password: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(f"AUTH {password}\r\nPING\r\n".encode())
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = conn.recv(1024)
                if not chunk:
                    return False
                reply += chunk
            return reply == b"+OK\r\n+PONG\r\n"
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    base = tmp_path_factory.mktemp("redis")
    server = Redis(port=free_port())
    argv = [
        require("redis-server"),
        "--port",
        str(server.port),
        "--bind",
        "127.0.0.1",
        "--requirepass",
        server.password,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(base),
    ]
    process = spawn("redis-server", argv, base_env(), base / "logs")
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not redis_answers(server.port, server.password):
            if process.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start\n{process.output()}")
            time.sleep(POLL)
        yield server
    finally:
        process.stop()


# --------------------------------------------------------------------------------------
# A scripted MySQL server: a MySQL 8 style handshake, then a switch to native passwords


def native_token(password: str, scramble: bytes) -> bytes:
    stage1 = hashlib.sha1(password.encode()).digest()
    stage2 = hashlib.sha1(stage1).digest()
    mix = hashlib.sha1(scramble + stage2).digest()
    return bytes(a ^ b for a, b in zip(stage1, mix, strict=True))


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client closed the connection")
        data += chunk
    return data


def _read_packet(conn: socket.socket) -> tuple[int, bytes]:
    header = _recv_exact(conn, 4)
    length = int.from_bytes(header[:3], "little")
    return header[3], _recv_exact(conn, length)


def _packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def _cstring(data: bytes, offset: int) -> tuple[bytes, int]:
    end = data.index(b"\0", offset)
    return data[offset:end], end + 1


OK_PACKET = b"\x00\x00\x00\x02\x00\x00\x00"


class ScriptedMySQL:
    """Accepts connections on loopback; records what each client sent."""

    CAPABILITIES = 0x00000001 | 0x00000008 | 0x00000200 | 0x00008000 | 0x00080000 | 0x00200000

    def __init__(self, user: str, password: str, database: str) -> None:
        self.user, self.password, self.database = user, password, database
        self.seen: list[dict[str, Any]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                record: dict[str, Any] = {}
                self.seen.append(record)
                with contextlib.suppress(OSError, ValueError, IndexError, struct.error):
                    self._session(conn, record)

    def _session(self, conn: socket.socket, record: dict[str, Any]) -> None:
        scramble1 = secrets.token_bytes(20).replace(b"\0", b"\x01")
        caps = self.CAPABILITIES
        handshake = (
            b"\x0a8.0.99-scripted\0"
            + struct.pack("<I", 7)
            + scramble1[:8]
            + b"\0"
            + struct.pack("<H", caps & 0xFFFF)
            + bytes([45])
            + struct.pack("<H", 2)
            + struct.pack("<H", caps >> 16)
            + bytes([21])
            + b"\0" * 10
            + scramble1[8:]
            + b"\0"
            + b"caching_sha2_password\0"
        )
        conn.sendall(_packet(0, handshake))
        seq, response = _read_packet(conn)
        flags = struct.unpack_from("<I", response, 0)[0]
        record["flags"] = flags
        user, offset = _cstring(response, 32)
        length = response[offset]
        token = response[offset + 1 : offset + 1 + length]
        offset += 1 + length
        database, offset = _cstring(response, offset)
        plugin, offset = _cstring(response, offset)
        record.update(
            user=user.decode(),
            database=database.decode(),
            plugin=plugin.decode(),
            first_token_ok=token == native_token(self.password, scramble1),
        )
        scramble2 = secrets.token_bytes(20).replace(b"\0", b"\x02")
        switch = b"\xfemysql_native_password\0" + scramble2 + b"\0"
        conn.sendall(_packet(seq + 1, switch))
        seq, token2 = _read_packet(conn)
        record["switched_token_ok"] = token2 == native_token(self.password, scramble2)
        if (
            not record["switched_token_ok"]
            or record["user"] != self.user
            or record["database"] != self.database
        ):
            message = f"Access denied for user '{record['user']}'@'127.0.0.1'".encode()
            conn.sendall(_packet(seq + 1, b"\xff" + struct.pack("<H", 1045) + b"#28000" + message))
            return
        conn.sendall(_packet(seq + 1, OK_PACKET))
        seq, command = _read_packet(conn)
        record["command"] = command[:1].hex()
        conn.sendall(_packet(seq + 1, OK_PACKET))
        with contextlib.suppress(OSError, ConnectionError):
            _read_packet(conn)


@pytest.fixture
def scripted_mysql() -> Iterator[ScriptedMySQL]:
    server = ScriptedMySQL("zpack", "s3cret-" + secrets.token_urlsafe(12), "zpack")
    yield server
    server.close()


# --------------------------------------------------------------------------------------
# zpack-api


@dataclass
class Api:
    process: Process
    port: int
    env: dict[str, str]

    def healthz(self) -> tuple[int, dict[str, Any], str]:
        status, _, body = get("127.0.0.1", self.port, "/healthz")
        parsed = json.loads(body)
        assert isinstance(parsed, dict), body
        return status, parsed, body


StartApi = Callable[..., Api]


def api_env(port: int, db: MariaDB, redis: Redis) -> dict[str, str]:
    return {
        **base_env(),
        "NODE_ENV": "production",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(db.port),
        "DB_NAME": db.database,
        "DB_USER": db.user,
        "DB_PASSWORD": db.password,
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(redis.port),
        "REDIS_PASSWORD": redis.password,
        "AGENT_PORT": "18888",
        "PUBLIC_URL": "https://api.zerolaghub.test",
        "PORTAL_URL": "https://zerolaghub.test",
    }


@pytest.fixture
def start_api(
    node: str, installed: dict[str, Path], mariadb: MariaDB, redis: Redis, start: Spawn
) -> StartApi:
    def _start(**overrides: str) -> Api:
        port = free_port()
        env = {**api_env(port, mariadb, redis), **overrides}
        process = start("zpack-api", [node, str(installed["zpack-api"])], env)
        process.wait_listening("127.0.0.1", port)
        return Api(process, port, env)

    return _start


def assert_no_secret(body: str, *secret_values: str) -> None:
    for value in secret_values:
        assert value not in body, "a password leaked into the /healthz answer"


def test_api_healthy_with_the_delivered_credentials(start_api: StartApi) -> None:
    api = start_api()
    status, content_type, body = get("127.0.0.1", api.port, "/healthz")
    assert (status, content_type) == (200, "application/json"), body
    assert json.loads(body) == {"service": "zpack-api", "db": {"ok": True}, "redis": {"ok": True}}
    assert_no_secret(body, api.env["DB_PASSWORD"], api.env["REDIS_PASSWORD"])


def test_api_wrong_db_password(start_api: StartApi, mariadb: MariaDB, redis: Redis) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    api = start_api(DB_PASSWORD=wrong)
    status, answer, body = api.healthz()
    assert status == 503, body
    assert answer["service"] == "zpack-api"
    assert answer["redis"] == {"ok": True}
    assert answer["db"]["ok"] is False
    assert "Access denied" in answer["db"]["error"]
    assert_no_secret(body, wrong, mariadb.password, redis.password)


def test_api_db_user_without_access_to_the_database(start_api: StartApi) -> None:
    status, answer, body = start_api(DB_NAME="other").healthz()
    assert status == 503, body
    assert answer["db"]["ok"] is False
    assert "other" in answer["db"]["error"]
    assert answer["redis"] == {"ok": True}


def test_api_wrong_redis_password(start_api: StartApi, mariadb: MariaDB, redis: Redis) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    api = start_api(REDIS_PASSWORD=wrong)
    status, answer, body = api.healthz()
    assert status == 503, body
    assert answer["db"] == {"ok": True}
    assert answer["redis"]["ok"] is False
    assert "WRONGPASS" in answer["redis"]["error"]
    assert_no_secret(body, wrong, mariadb.password, redis.password)


def test_api_follows_the_database_going_down_and_up(start_api: StartApi, mariadb: MariaDB) -> None:
    api = start_api()
    assert api.healthz()[0] == 200
    mariadb.stop()
    try:
        status, answer, body = api.healthz()
        assert status == 503, body
        assert answer["db"]["ok"] is False
        assert "ECONNREFUSED" in answer["db"]["error"]
        assert answer["redis"] == {"ok": True}
    finally:
        mariadb.start()
    assert api.healthz()[0] == 200


def test_api_redis_down(start_api: StartApi) -> None:
    status, answer, body = start_api(REDIS_PORT=str(free_port())).healthz()
    assert status == 503, body
    assert answer["db"] == {"ok": True}
    assert answer["redis"]["ok"] is False
    assert "ECONNREFUSED" in answer["redis"]["error"]


def test_api_database_that_never_answers_times_out(start_api: StartApi) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        api = start_api(DB_PORT=str(silent.getsockname()[1]))
        began = time.monotonic()
        status, answer, body = api.healthz()
        elapsed = time.monotonic() - began
    assert status == 503, body
    assert answer["db"]["ok"] is False
    assert "no answer" in answer["db"]["error"]
    assert 2.5 < elapsed < 10, elapsed


def test_api_auth_switch_to_native_password(
    start_api: StartApi, scripted_mysql: ScriptedMySQL
) -> None:
    api = start_api(
        DB_PORT=str(scripted_mysql.port),
        DB_USER=scripted_mysql.user,
        DB_NAME=scripted_mysql.database,
        DB_PASSWORD=scripted_mysql.password,
    )
    status, answer, body = api.healthz()
    assert status == 200, body
    assert answer["db"] == {"ok": True}
    [record] = scripted_mysql.seen
    assert record["user"] == "zpack"
    assert record["database"] == "zpack"
    assert record["plugin"] == "mysql_native_password"
    assert record["flags"] & 0x08, "CLIENT_CONNECT_WITH_DB"
    assert record["first_token_ok"], "token for the handshake's scramble"
    assert record["switched_token_ok"], "token for the AuthSwitchRequest's scramble"
    assert record["command"] in ("0e", "03"), "COM_PING or COM_QUERY"


def test_api_auth_switch_with_a_wrong_password(
    start_api: StartApi, scripted_mysql: ScriptedMySQL
) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    api = start_api(DB_PORT=str(scripted_mysql.port), DB_PASSWORD=wrong)
    status, answer, body = api.healthz()
    assert status == 503, body
    assert answer["db"]["ok"] is False
    assert "1045" in answer["db"]["error"]
    assert "Access denied" in answer["db"]["error"]
    assert_no_secret(body, wrong, scripted_mysql.password)


def test_api_listens_on_host_only(start_api: StartApi) -> None:
    api = start_api()
    assert listening_addresses(api.port) == {"127.0.0.1"}
    assert not can_connect("127.0.0.2", api.port)


def test_api_unknown_path(start_api: StartApi) -> None:
    api = start_api()
    assert get("127.0.0.1", api.port, "/")[0] == 404


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"DB_PASSWORD": ""}, "DB_PASSWORD is not set"),
        ({"REDIS_HOST": ""}, "REDIS_HOST is not set"),
        ({"PORT": "eighty"}, "PORT is not a port number"),
        ({"PORTAL_URL": "zerolaghub.test"}, "PORTAL_URL is not an http(s) URL"),
    ],
)
def test_api_refuses_a_bad_environment(
    overrides: dict[str, str],
    named: str,
    node: str,
    installed: dict[str, Path],
    mariadb: MariaDB,
    redis: Redis,
    start: Spawn,
) -> None:
    env = {**api_env(free_port(), mariadb, redis), **overrides}
    env = {key: value for key, value in env.items() if value != ""}
    process = start("zpack-api", [node, str(installed["zpack-api"])], env)
    assert process.wait_exit() == EX_CONFIG
    stderr = process.stderr()
    assert named in stderr
    assert_no_secret(stderr, mariadb.password, redis.password)


def test_api_stops_cleanly_on_sigterm(start_api: StartApi) -> None:
    api = start_api()
    assert api.process.stop() == 0


# --------------------------------------------------------------------------------------
# zpack-portal


def portal_env(port: int) -> dict[str, str]:
    return {
        **base_env(),
        "NODE_ENV": "production",
        "HOSTNAME": "127.0.0.1",
        "PORT": str(port),
        "API_URL": "https://api.zerolaghub.test",
        "API_INTERNAL_URL": "http://10.60.0.100:8080",
    }


@pytest.fixture
def portal(node: str, installed: dict[str, Path], start: Spawn) -> tuple[Process, int]:
    port = free_port()
    process = start("zpack-portal", [node, str(installed["zpack-portal"])], portal_env(port))
    process.wait_listening("127.0.0.1", port)
    return process, port


def test_portal_healthz_and_page(portal: tuple[Process, int]) -> None:
    _, port = portal
    assert get_json("127.0.0.1", port, "/healthz") == (
        200,
        {"service": "zpack-portal", "ok": True},
    )
    status, content_type, body = get("127.0.0.1", port, "/")
    assert status == 200
    assert content_type.startswith("text/html")
    assert "<html" in body
    assert "https://api.zerolaghub.test" in body
    assert get("127.0.0.1", port, "/nothing")[0] == 404


def test_portal_listens_on_hostname_only(portal: tuple[Process, int]) -> None:
    _, port = portal
    assert listening_addresses(port) == {"127.0.0.1"}
    assert not can_connect("127.0.0.2", port)


@pytest.mark.parametrize("missing", ["HOSTNAME", "API_INTERNAL_URL"])
def test_portal_refuses_a_missing_variable(
    missing: str, node: str, installed: dict[str, Path], start: Spawn
) -> None:
    env = portal_env(free_port())
    del env[missing]
    process = start("zpack-portal", [node, str(installed["zpack-portal"])], env)
    assert process.wait_exit() == EX_CONFIG
    assert f"{missing} is not set" in process.stderr()


def test_portal_stops_cleanly_on_sigterm(portal: tuple[Process, int]) -> None:
    process, _ = portal
    assert process.stop() == 0


# --------------------------------------------------------------------------------------
# zlh-agent


def agent_env(wait: str | None = None) -> dict[str, str]:
    env = base_env()
    if wait is not None:
        env["ZLH_AGENT_ADDRESS_WAIT"] = wait
    return env


@pytest.fixture
def agent_path(installed: dict[str, Path]) -> str:
    require("python3")
    return str(installed["zlh-agent"])


def test_agent_listens_on_the_interface_address_only(agent_path: str, start: Spawn) -> None:
    port = free_port()
    process = start(
        "zlh-agent", [agent_path, "--interface", "lo", "--port", str(port)], agent_env()
    )
    process.wait_listening("127.0.0.1", port)
    assert get_json("127.0.0.1", port, "/healthz") == (200, {"service": "zlh-agent", "ok": True})
    assert listening_addresses(port) == {"127.0.0.1"}
    assert not can_connect("127.0.0.2", port)
    assert process.stop() == 0


def test_agent_without_the_interface_exits_with_a_message(agent_path: str, start: Spawn) -> None:
    argv = [agent_path, "--interface", "zlhnosuch0", "--port", str(free_port())]
    began = time.monotonic()
    process = start("zlh-agent", argv, agent_env(wait="1"))
    code = process.wait_exit(timeout=15)
    elapsed = time.monotonic() - began
    assert code != 0
    assert "interface zlhnosuch0 does not exist after waiting 1 s" in process.stderr()
    assert elapsed >= 1.0


def test_agent_stops_cleanly_while_waiting_for_an_address(agent_path: str, start: Spawn) -> None:
    argv = [agent_path, "--interface", "zlhnosuch0", "--port", str(free_port())]
    process = start("zlh-agent", argv, agent_env(wait="30"))
    wait_until("the agent to report its wait", lambda: "waiting" in process.stderr(), 10)
    began = time.monotonic()
    assert process.stop() == 0
    assert time.monotonic() - began < 5


def test_agent_refuses_a_bad_wait(agent_path: str, start: Spawn) -> None:
    argv = [agent_path, "--interface", "lo", "--port", str(free_port())]
    process = start("zlh-agent", argv, agent_env(wait="soon"))
    assert process.wait_exit() == 2
    assert "ZLH_AGENT_ADDRESS_WAIT" in process.stderr()
