"""Print the name (with its extras) of every dependency in setup.cfg, runtime and test, that
applies to this platform: `make test-latest` upgrades each to its newest release, past setup.cfg's
range too, so that a release rollcall does not admit yet is tried as well."""

from __future__ import annotations

import configparser
import pathlib

from packaging.requirements import Requirement

SETUP_CFG = pathlib.Path(__file__).resolve().parent.parent / "setup.cfg"


def names() -> list[str]:
    """`name[extras]` of each requirement whose environment marker holds here."""
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    lines = parser["options"]["install_requires"].split("\n")
    lines += parser["options.extras_require"]["test"].split("\n")
    found = []
    for line in filter(None, (line.strip() for line in lines)):
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
            found.append(requirement.name + extras)
    return found


if __name__ == "__main__":
    print(" ".join(names()))
