"""A private PostgreSQL cluster on loopback for the test suite.

    python -m devstack.postgres start [--port 54329] [--fresh NAME]    # prints the DATABASE_URL
    python -m devstack.postgres stop

It uses the machine's PostgreSQL binaries (Debian's postgresql package) and its own data
directory, so it neither needs nor touches the system's cluster. As root, the server runs
as the `postgres` user, which PostgreSQL requires.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from devstack.process import cache_dir

DEFAULT_PORT = 54329


def bin_dir() -> Path:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")


def data_dir() -> Path:
    # The postgres user must reach it, so as root it lives outside root's home.
    if os.geteuid() == 0:
        return Path("/var/tmp/apikey-portal-postgres")  # noqa: S108 - fixed, owned by postgres
    return cache_dir() / "postgres"


def database_url(port: int, name: str = "portal") -> str:
    return f"postgres://postgres@127.0.0.1:{port}/{name}"


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_as_postgres(args), check=True, text=True, capture_output=True)


def start(port: int = DEFAULT_PORT) -> str:
    binaries = bin_dir()
    data = data_dir()
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        _run(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
    status = subprocess.run(
        _as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "status"]),
        capture_output=True,
        check=False,
    )
    if status.returncode != 0:
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off"
        _run(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(data / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
    ensure_database("portal", port)
    return database_url(port)


def execute(database: str, sql: str, port: int = DEFAULT_PORT) -> str:
    """Run `sql` in `database` with psql; its output."""
    client = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", database]
    return _run([str(bin_dir() / "psql"), *client, "-tAc", sql]).stdout


def ensure_database(name: str, port: int = DEFAULT_PORT) -> None:
    """Create the database `name` on the running server unless it exists."""
    binaries = bin_dir()
    client = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"  # noqa: S608 - our own names
    exists = _run([str(binaries / "psql"), *client, "-tAc", query])
    if exists.stdout.strip() != "1":
        _run([str(binaries / "createdb"), *client, name])


def fresh_database(name: str, port: int = DEFAULT_PORT) -> str:
    """Drop the database `name` with everything in it, make it again empty; its URL."""
    execute("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', port)
    ensure_database(name, port)
    return database_url(port, name)


def stop() -> None:
    data = data_dir()
    if (data / "postmaster.pid").exists():
        _run([str(bin_dir() / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"])


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.postgres")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--fresh", metavar="NAME", help="start, then drop and make the database NAME empty"
    )
    args = parser.parse_args(argv)
    if args.action == "start":
        url = start(args.port)
        print(fresh_database(args.fresh, args.port) if args.fresh else url)
    else:
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
