"""A newcomer's clone of this checkout in a closed folder (mode 700, like /root), made by the
invoking user or handed to an unprivileged one, for the first-run tests."""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import select
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence

from tests.support import ROOT

#: the unprivileged user of the tests run as root: it exists on every Debian system
UNPRIVILEGED = "nobody"
CLOSED = 0o700
OPEN = 0o755
#: by its full path: a test may run a command with a PATH of its own
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


def is_root() -> bool:
    return os.geteuid() == 0


def clone(dest: pathlib.Path) -> pathlib.Path:
    """`git clone` of this checkout into `dest`, with the checkout's uncommitted changes laid on
    top, so that the clone runs the code under test."""
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True)
    changed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--modified", "--others", "--exclude-standard", "-z"],
        check=True, capture_output=True, text=True,
    ).stdout
    for name in filter(None, changed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
        else:
            (dest / name).unlink(missing_ok=True)  # deleted in the checkout
    return dest


@contextlib.contextmanager
def closed_home(user: str | None = None) -> Iterator[pathlib.Path]:
    """A folder of mode 700 owned by `user` (by default the invoking one), in a folder every
    user can enter (pytest's own tmp_path is closed to other users); removed afterwards."""
    outer = pathlib.Path(tempfile.mkdtemp(prefix="rollcall-first-run-"))
    outer.chmod(OPEN)
    home = outer / "home"
    home.mkdir(mode=CLOSED)
    try:
        if user is not None:
            account = pwd.getpwnam(user)
            os.chown(home, account.pw_uid, account.pw_gid)
        yield home
    finally:
        shutil.rmtree(outer)


def give_to(path: pathlib.Path, user: str) -> None:
    """Make `user` the owner of everything under `path` (a clone made by root)."""
    subprocess.run(["chown", "-R", f"{user}:", str(path)], check=True)


def as_user(user: str | None, argv: Sequence[str]) -> list[str]:
    """`argv` run as `user` (through runuser, as root), or as the invoking user."""
    return list(argv) if user is None else [RUNUSER, "-u", user, "--", *argv]


def ends_within(pid: int, timeout: float) -> bool:
    """Whether process `pid` (not necessarily a child) has ended, or ends within `timeout`
    seconds: its pidfd turns readable when it does, so nothing polls. A stopped daemon may
    outlive its pid file by a moment."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)
