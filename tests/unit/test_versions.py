"""protocol/versions.py: the libraries whose internals rollcall relies on are pinned in setup.cfg to
the very series their modules assert at import, and an untested release is refused in one line."""

from __future__ import annotations

import configparser
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from handlers import tokens
from protocol import redis_transport, sessions
from protocol.versions import UntestedVersion, require, series_specifier
from store import aiopg_compat
from tests.support import ROOT

#: each library rollcall relies on the internals of, and the series its module asserts
ASSERTED = {
    "tornado": sessions.TORNADO_SERIES,
    "python-engineio": sessions.ENGINEIO_SERIES,
    "redis": redis_transport.REDIS_SERIES,
    "PyJWT": tokens.PYJWT_SERIES,
    "aiopg": aiopg_compat.AIOPG_SERIES,
}


def pinned() -> dict[str, SpecifierSet]:
    """setup.cfg's install_requires, by distribution name."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser["options"]["install_requires"].strip().splitlines()
    requirements = [Requirement(line) for line in lines]
    return {requirement.name.lower(): requirement.specifier for requirement in requirements}


@pytest.mark.parametrize("distribution", list(ASSERTED))
def test_setup_cfg_pins_the_series_the_module_asserts(distribution: str) -> None:
    assert pinned()[distribution.lower()] == SpecifierSet(series_specifier(ASSERTED[distribution]))


@pytest.mark.parametrize("distribution", list(ASSERTED))
def test_the_installed_release_is_of_the_asserted_series(distribution: str) -> None:
    require(distribution, ASSERTED[distribution])


def test_another_series_is_refused_naming_the_library_the_release_and_the_range() -> None:
    found = version("python-engineio")

    with pytest.raises(UntestedVersion) as refused:
        require("python-engineio", (4, 14))

    message = str(refused.value)
    assert "\n" not in message
    assert f"python-engineio {found} is installed" in message
    assert "python-engineio>=4.14,<4.15" in message


def test_a_missing_library_is_refused() -> None:
    with pytest.raises(UntestedVersion, match="no-such-distribution is not installed"):
        require("no-such-distribution", (1, 0))


def test_tested_range_is_one_minor_series() -> None:
    assert series_specifier((4, 15)) == ">=4.15,<4.16"
