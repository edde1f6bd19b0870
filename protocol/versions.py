"""The check that a library whose internals rollcall relies on is a release it was tested with.

protocol/engine.py and protocol/sessions.py override python-engineio internals (sessions.py
writes through Tornado's too), protocol/redis_transport.py relies on how redis-py's pub/sub
blocks, handlers/tokens.py swaps an algorithm on PyJWT's PyJWS and store/aiopg_compat.py patches
aiopg. Each of those modules names the release series it was tested with and calls `require`
when it is imported, so an upgrade past it stops the server at start with one line instead of
breaking it silently. setup.cfg pins the same series (tests/unit/test_versions.py keeps the two
equal).

A leaf module (it imports nothing of rollcall), so that every layer may use it.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

#: major.minor at the start of a version string ("4.15.1", "8.1.0b1")
_SERIES = re.compile(r"(\d+)\.(\d+)")


class UntestedVersion(ImportError):
    """The installed release of a library is not the series rollcall was tested with."""


def series_specifier(series: tuple[int, int]) -> str:
    """The requirement specifier of a release series: (4, 15) is ">=4.15,<4.16"."""
    major, minor = series
    return f">={major}.{minor},<{major}.{minor + 1}"


def require(distribution: str, series: tuple[int, int]) -> None:
    """Raise UntestedVersion unless the installed `distribution` is of `series` (any patch)."""
    wanted = f"{distribution}{series_specifier(series)}"
    try:
        found = version(distribution)
    except PackageNotFoundError:
        raise UntestedVersion(f"{distribution} is not installed; rollcall needs {wanted}") from None
    match = _SERIES.match(found)
    if match is None or (int(match[1]), int(match[2])) != series:
        raise UntestedVersion(
            f"{distribution} {found} is installed, but rollcall relies on its internals and was "
            f"tested only with {wanted} (see setup.cfg)"
        )
