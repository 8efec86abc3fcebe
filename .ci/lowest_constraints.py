"""Print pip constraints pinning the core dependencies to their lowest allowed versions.

For each core package, the ``>=`` bound of ``pyproject.toml``; when the index does not have
that exact version, the lowest version it has above the bound (said on stderr). Used by
``.ci/test-lowest`` (``make test-lowest``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

#: the packages whose API the code uses directly
CORE = (
    "coffea",
    "dask",
    "distributed",
    "dask-jobqueue",
    "uproot",
    "awkward",
    "vector",
    "hist",
    "numpy",
    "pydantic",
    "atlasopenmagic",
    "cloudpickle",
    "fsspec",
    "requests",
    "pyyaml",
    "numba",
    "iminuit",
    "pyBumpHunter",
    "matplotlib",
    "mplhep",
)


def available(name: str) -> list[Version]:
    """Versions the configured index offers (``pip index versions``)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", name],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    match = re.search(r"Available versions: (.*)", out)
    versions = []
    for text in match.group(1).split(", ") if match else []:
        try:
            versions.append(Version(text.strip()))
        except InvalidVersion:
            continue
    return sorted(versions)


def main() -> int:
    """Write the constraints to stdout."""
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    for text in project["dependencies"]:
        req = Requirement(text)
        if req.name not in CORE:
            continue
        lows = [Version(s.version) for s in req.specifier if s.operator == ">="]
        if not lows:
            continue
        low = max(lows)
        offered = [v for v in available(req.name) if v in req.specifier and not v.is_prerelease]
        if not offered:
            print(f"# {req.name}: the index has no version in {req.specifier}", file=sys.stderr)
            continue
        pin = offered[0]
        if pin != low:
            print(f"# {req.name}: {low} is not on the index; using {pin}", file=sys.stderr)
        print(f"{req.name}=={pin}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
