"""PostgreSQL as Airflow's metadata database for the scheduler-driven stacks, as in the compose stack.

`make airflow`, the browser test and the tests that run the scheduler use it
(SQLite's single writer stalls the API server and the triggerer under two
triggers at once); `make demo` stays on SQLite. Debian's `postgresql` package
provides the server (`.ci/run` installs it where it is missing). The data folder
is under `location`, the server listens on 127.0.0.1 only, in its own process
group, and asks for a password: a random one, made at `initdb`, kept in a file
only its owner reads, handed to Airflow through the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from localml.process_group import group_alive, start_group, stop_pidfile

PROJECT_ROOT = Path(__file__).resolve().parent.parent
USER = DATABASE = "airflow"
# Debian runs the server as this account; a server never runs as root.
SYSTEM_ACCOUNT = "postgres"
INSTALL_HINT = "install Debian's postgresql package (apt-get install postgresql; `.ci/run` does)"


@dataclasses.dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    password: str

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{USER}:{self.password}@{self.host}:{self.port}/{DATABASE}"


def server_bin() -> Path:
    """The folder of the newest installed server's programs (`initdb`, `postgres`)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda path: int(Path(path).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError(f"PostgreSQL is not installed: {INSTALL_HINT}")


def _as_server_account(command: list[str]) -> list[str]:
    """Run as the `postgres` account when we are root (the server refuses root), else as ourselves."""
    if os.geteuid() != 0:
        return command
    return ["setpriv", f"--reuid={SYSTEM_ACCOUNT}", f"--regid={SYSTEM_ACCOUNT}", "--init-groups", "--", *command]


def _server_home(location: Path) -> Path:
    """Where the server's own files go: `location`, unless we are root and the server account cannot reach it
    (a folder on the way is closed to others, as pytest's temporary folders are); then a folder of its own
    in the system's temporary directory, named after `location`."""
    if os.geteuid() != 0 or all(folder.stat().st_mode & 0o001 for folder in location.resolve().parents):
        return location
    digest = hashlib.sha256(str(location.resolve()).encode()).hexdigest()[:16]
    home = Path(tempfile.gettempdir()) / f"batch-scoring-postgres-{digest}"
    home.mkdir(mode=0o755, exist_ok=True)
    return home


def _give_to_server_account(*paths: Path) -> None:
    if os.geteuid() == 0:
        for path in paths:
            shutil.chown(path, SYSTEM_ACCOUNT, SYSTEM_ACCOUNT)


def start(location: Path, *, port: int, host: str = "127.0.0.1", timeout_s: float = 60) -> Postgres:
    """Start the server on `location` (made with `initdb` the first time) and its `airflow` database."""
    import psycopg2

    binaries = server_bin()
    location.mkdir(parents=True, exist_ok=True)
    home = _server_home(location)
    home.chmod(0o755)  # the server account must reach its folders when we are root
    data, sockets, pidfile = home / "data", home / "sockets", location / "postgres.pid"
    password_file = home / "password"
    stop_pidfile(pidfile)  # a leftover of a run that was killed
    if not (data / "PG_VERSION").exists():
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(mode=0o700)
        password_file.write_text(secrets.token_urlsafe(24), encoding="utf-8")
        password_file.chmod(0o600)
        _give_to_server_account(data, password_file)
        made = subprocess.run(_as_server_account([
            str(binaries / "initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256",
            f"--pwfile={password_file}", "--encoding=UTF8", "--no-sync", "--no-instructions"]),
            capture_output=True, text=True)
        if made.returncode != 0:
            shutil.rmtree(data, ignore_errors=True)
            raise RuntimeError("initdb failed: " + " ".join((made.stderr or made.stdout).split())[:500])
    sockets.mkdir(exist_ok=True)
    _give_to_server_account(sockets)
    password = password_file.read_text(encoding="utf-8").strip()
    # Scratch data: no fsync. Only 127.0.0.1; the Unix socket in our own folder, not /var/run.
    start_group(_as_server_account([
        str(binaries / "postgres"), "-D", str(data), "-h", host, "-p", str(port), "-k", str(sockets),
        "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
        "-c", "max_connections=200"]), pidfile=pidfile, logfile=location / "postgres.log")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            connection = psycopg2.connect(host=host, port=port, user=USER, password=password, dbname="postgres",
                                          connect_timeout=2)
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                stop_pidfile(pidfile)
                raise RuntimeError(f"PostgreSQL did not accept connections on {host}:{port} within "
                                   f"{timeout_s:.0f}s; see {location / 'postgres.log'}") from None
            time.sleep(0.3)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if cursor.fetchone() is None:
                cursor.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        connection.close()
    return Postgres(host, port, password)


def stop(location: Path, *, discard: bool = False) -> None:
    """Stop the server by the group recorded at start: SIGINT first (PostgreSQL's fast shutdown: it ends its
    clients' sessions; SIGTERM would wait for them), then the usual SIGTERM and SIGKILL for what is left.
    `discard`: also remove its data (a test's scratch database)."""
    pidfile = location / "postgres.pid"
    try:
        pgid = int(pidfile.read_text(encoding="utf-8").strip())
    except (FileNotFoundError, ValueError):
        pgid = None
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGINT)
        deadline = time.monotonic() + 15
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop_pidfile(pidfile, grace_s=15)
    if discard and location.exists():
        home = _server_home(location)
        for folder in {home, location}:
            for name in ("data", "sockets", "password"):
                target = folder / name
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                else:
                    target.unlink(missing_ok=True)
        if home != location:
            shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--location", type=Path, default=PROJECT_ROOT / ".state" / "postgres")
    parser.add_argument("--port", type=int, default=5433)
    args = parser.parse_args()
    if args.action == "start":
        server = start(args.location, port=args.port)
        print(f"PostgreSQL on {server.host}:{server.port}, database {DATABASE} (data in {args.location})")
    else:
        stop(args.location)
        print("PostgreSQL stopped")


if __name__ == "__main__":
    main()
