"""Check a release build: the sdist is complete, the wheel is PyPI-ready, no build path inside.

    python .ci/check_wheel.py DIST_DIR WHEELHOUSE

DIST_DIR holds one sdist and one wheel (``python -m build``). The wheel is
repaired with auditwheel into WHEELHOUSE (a manylinux tag, as PyPI requires),
then checked: every C extension present with its type stub, no RPATH or
RUNPATH but $ORIGIN in them, LICENSE and py.typed shipped, metadata as
pyproject.toml says. The sdist
must hold every tracked file that the tests read (tests/, notebooks/, bench/,
docs/, mkdocs.yml) so that its test suite runs from the unpacked sdist.
Needs auditwheel, patchelf and twine; runs in seconds.
"""

from __future__ import annotations

import email.parser
import io
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

ROOT = Path(__file__).resolve().parents[1]
EXTENSIONS = ("_direct", "_arrowc", "_codecc")
SDIST_FOLDERS = ("tests", "notebooks", "bench", "examples", "docs")
# What stays out of the wheel (the benchmark suite in bench/, the example HTTP client and test server in
# examples/), by the module names it once had inside the package and has in the repository.
NOT_IN_WHEEL = re.compile(r"duckdb_subinterp/(.*/)?(_?bench\w*|suite|async_examples|async_http)\.py")


def fail(message: str) -> None:
    print(f"check_wheel: {message}", file=sys.stderr)
    raise SystemExit(1)


def one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        fail(f"expected one {pattern} in {folder}, found {[p.name for p in found]}")
    return found[0]


def source_version() -> str:
    match = re.search(r'^__version__ = "([^"]+)"', (ROOT / "duckdb_subinterp" / "_version.py").read_text(), re.M)
    if match is None:
        fail('no __version__ = "..." line in duckdb_subinterp/_version.py')
    return match.group(1)


def check_sdist(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    required = {"LICENSE", "README.md", "pyproject.toml", "setup.py", "MANIFEST.in", "mkdocs.yml"}
    required |= {"duckdb_subinterp/py.typed"}
    required |= {f"duckdb_subinterp/{extension}.{suffix}" for extension in EXTENSIONS for suffix in ("c", "pyi")}
    tracked = subprocess.run(
        ["git", "ls-files", "--", *SDIST_FOLDERS], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if tracked.returncode == 0:  # outside a git checkout (an unpacked sdist) there is nothing to compare with
        required |= set(tracked.stdout.split())
    missing = sorted(required - names)
    if missing:
        fail(f"{sdist.name} lacks {missing}: add them to MANIFEST.in")
    if any(name.endswith((".so", ".pyc")) for name in names):
        fail(f"{sdist.name} carries build products: {[n for n in names if n.endswith(('.so', '.pyc'))]}")
    print(f"check_wheel: {sdist.name}: {len(names)} files, tests and their data included")


def runpaths(data: bytes) -> list[str]:
    """Return the RPATH and RUNPATH entries of a shared object."""
    paths: list[str] = []
    for section in ELFFile(io.BytesIO(data)).iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                if tag.entry.d_tag == "DT_RUNPATH":
                    paths += tag.runpath.split(":")
                elif tag.entry.d_tag == "DT_RPATH":
                    paths += tag.rpath.split(":")
    return paths


def check_wheel(wheel: Path, version: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = f"duckdb_subinterp-{version}.dist-info"
        stubs = [f"duckdb_subinterp/{extension}.pyi" for extension in EXTENSIONS]
        for required in (
            f"{dist_info}/licenses/LICENSE",
            "duckdb_subinterp/py.typed",
            "duckdb_subinterp/__init__.py",
            *stubs,
        ):
            if required not in names:
                fail(f"{wheel.name} lacks {required}")
        metadata = email.parser.Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        for extension in EXTENSIONS:
            built = [n for n in names if re.fullmatch(rf"duckdb_subinterp/{extension}\.[^/]+\.so", n)]
            if len(built) != 1:
                fail(f"{wheel.name}: expected one duckdb_subinterp/{extension}.*.so, found {built}")
            paths = [p for p in runpaths(archive.read(built[0])) if not p.startswith("$ORIGIN")]
            if paths:
                fail(f"{wheel.name}: {built[0]} has RPATH/RUNPATH {paths}: a build machine's path in a wheel")
        outside = [n for n in names if NOT_IN_WHEEL.fullmatch(n)]
        if outside:
            fail(f"{wheel.name} carries benchmark or example-server code: {outside}")
        if any(n.endswith((".c", ".pyc")) or n.startswith("tests/") for n in names):
            fail(f"{wheel.name} carries sources or tests: {[n for n in names if n.endswith(('.c', '.pyc'))]}")
    if metadata["Version"] != version or metadata["License-Expression"] != "MIT":
        fail(f"{wheel.name}: METADATA says version {metadata['Version']}, license {metadata['License-Expression']}")
    required = metadata.get_all("Requires-Dist") or []
    if any(r.startswith("psutil") and "extra ==" not in r for r in required):
        fail(f"{wheel.name}: psutil is a required dependency; it belongs to the bench and test extras")
    if not metadata.get_all("Project-URL"):
        fail(f"{wheel.name}: no Project-URL")


def main() -> None:
    dist, wheelhouse = Path(sys.argv[1]), Path(sys.argv[2])
    version = source_version()
    sdist = one(dist, f"duckdb_subinterp-{version}.tar.gz")
    wheel = one(dist, f"duckdb_subinterp-{version}-*.whl")
    check_sdist(sdist)
    subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)], check=True)
    show = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(wheel)], capture_output=True, text=True, check=True
    )
    platform = re.search(r'platform tag:\s*"([^"]+)"', show.stdout + show.stderr)
    if platform is None:
        fail(f"auditwheel show gave no platform tag:\n{show.stdout}{show.stderr}")
    subprocess.run(
        [sys.executable, "-m", "auditwheel", "repair", "--plat", platform.group(1), "-w", str(wheelhouse), str(wheel)],
        check=True,
        capture_output=True,
    )
    repaired = one(wheelhouse, f"duckdb_subinterp-{version}-*manylinux*.whl")
    check_wheel(repaired, version)
    print(f"check_wheel: {repaired.name}: extensions built, no RUNPATH, LICENSE, py.typed and stubs shipped")


if __name__ == "__main__":
    main()
