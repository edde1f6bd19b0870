"""scripts/services.sh in a fresh clone under a closed folder (mode 700, as /root is): both
databases start and stop, as root (PostgreSQL then runs as `postgres`, which cannot enter the
clone) and as an unprivileged user (everything runs as that user); and without the binaries it
stops with one line."""

from __future__ import annotations

import os
import pathlib
import pwd
import shutil
import subprocess

import psycopg2
import pytest
import redis

from tests.support import free_port
from tests.support.clones import (
    UNPRIVILEGED,
    as_user,
    clone,
    closed_home,
    ends_within,
    give_to,
    is_root,
)

SERVICES = ("scripts", "services.sh")
PG_OWNER = "postgres"  # the system user that runs the cluster as root (scripts/services.sh)
PG_DATA_PARENT = pathlib.Path("/var/tmp")
#: the programs services.sh and bootstrap.sh use besides the ones a test takes away, from the
#: system's folders (a python3 of root's own, pyenv's, is closed to other users)
TOOLS = ("bash", "id", "mkdir", "ls", "python3")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
#: seconds a stopped database may take to end after its pid file is gone
STOP_TIMEOUT = 5.0


def owner(path: pathlib.Path) -> str:
    return path.owner()


def postmaster_pid(data: pathlib.Path) -> int:
    return int((data / "postmaster.pid").read_text().split()[0])


def process_user(pid: int) -> str:
    return pathlib.Path(f"/proc/{pid}").owner()


class Services:
    """scripts/services.sh of a clone, run as `user`."""

    def __init__(self, rc: pathlib.Path, user: str | None) -> None:
        self.script = str(rc.joinpath(*SERVICES))
        self.user = user
        self.run_dir = rc / ".run" / "test"

    def __call__(self, command: str, *ports: int) -> None:
        done = subprocess.run(
            as_user(self.user, [self.script, command, str(self.run_dir), *map(str, ports)]),
            capture_output=True, text=True,
        )
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("user", [None, UNPRIVILEGED], ids=["invoking-user", "unprivileged"])
def test_both_databases_start_and_stop_in_a_clone_under_a_closed_folder(user: str | None) -> None:
    if user is not None and not is_root():
        pytest.skip("the invoking user is the unprivileged one (see the other case)")
    redis_port, pg_port = free_port(), free_port()
    runs_as = user or pwd.getpwuid(os.geteuid()).pw_name
    with closed_home(user) as home:
        rc = clone(home / "rollcall")
        if user is not None:
            give_to(rc, user)
        services = Services(rc, user)
        try:
            services("start", redis_port, pg_port)
            data = (services.run_dir / "pg").resolve()
            redis_pid = int((services.run_dir / "redis.pid").read_text())
            assert process_user(redis_pid) == runs_as
            with redis.Redis(port=redis_port) as db:
                assert db.ping()
            with psycopg2.connect(host="127.0.0.1", port=pg_port, user="rollcall",
                                  dbname="rollcall") as conn, conn.cursor() as cur:
                cur.execute("SHOW data_directory")
                assert pathlib.Path(cur.fetchone()[0]) == data
            conn.close()
            pg_pid = postmaster_pid(data)
            if user is None and is_root():
                # the cluster's own folder, outside the clone, that only postgres may enter
                assert data.parent == PG_DATA_PARENT
                assert (owner(data), data.stat().st_mode & 0o777) == (PG_OWNER, 0o700)
                assert process_user(pg_pid) == PG_OWNER
            else:
                assert data == services.run_dir / "pg"
                assert process_user(pg_pid) == runs_as

            services("stop")
            assert ends_within(redis_pid, STOP_TIMEOUT) and ends_within(pg_pid, STOP_TIMEOUT)
            services("start", redis_port, pg_port)  # again, on the cluster it made
            assert postmaster_pid(data) != pg_pid
        finally:
            services("remove")
        assert not data.exists()


def path_without(tmp_path: pathlib.Path, user: str | None) -> str:
    """A PATH with the few tools the scripts use and neither Redis nor PostgreSQL's client."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    for tool in TOOLS:
        found = shutil.which(tool, path=SYSTEM_PATH)
        assert found is not None, f"{tool} is not installed"
        (bin_dir / tool).symlink_to(found)
    if user is not None:
        give_to(tmp_path, user)
    return str(bin_dir)


def unprivileged() -> str | None:
    """The user to run as for what only an ordinary user sees: nobody as root, else oneself."""
    return UNPRIVILEGED if is_root() else None


def test_without_redis_an_ordinary_user_is_told_in_one_line_what_to_install() -> None:
    user = unprivileged()
    with closed_home(user) as home:
        rc = clone(home / "rollcall")
        if user is not None:
            give_to(rc, user)
        env = {"PATH": path_without(home / "tools", user)}
        result = subprocess.run(
            as_user(user, [str(rc.joinpath(*SERVICES)), "redis-start", str(rc / ".run" / "dev"),
                           str(free_port())]), capture_output=True, text=True, env=env,
        )
        bootstrap = subprocess.run(as_user(user, [str(rc / "scripts" / "bootstrap.sh"), "run"]),
                                   capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "services: redis-server not found: ask an administrator to install redis-server "
        "(or run make as root, which installs it)"
    ]
    assert bootstrap.returncode == 1
    assert bootstrap.stderr.splitlines() == [
        "rollcall: missing system packages; install them with: sudo apt-get install "
        "redis-server postgresql-client"
    ]
