"""What `pip install` promises: declared dependencies, tested bounds, licence and version.

These read the installed metadata and the repository's files; the slow test that really
builds and installs the wheels is tests/test_wheels.py.
"""
import ast
import importlib.metadata as metadata
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import msgf

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"msgf": REPO / "msgf", "threshold-search": REPO / "threshold_search" / "src" / "threshold_search"}
PYPROJECTS = {"msgf": REPO / "pyproject.toml", "threshold-search": REPO / "threshold_search" / "pyproject.toml"}


def _requirements(project: str, extras: bool = False) -> list[Requirement]:
    """The dependencies as the installed metadata lists them; those of extras on request."""
    return [r for r in map(Requirement, metadata.requires(project) or []) if extras or not r.marker]


def _imported_top_levels(package_dir: Path) -> set[str]:
    names = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_every_imported_package_is_a_declared_dependency():
    distributions = metadata.packages_distributions()
    for project, package_dir in PACKAGES.items():
        declared = {canonicalize_name(r.name) for r in _requirements(project, extras=True)}
        own = {package_dir.name}
        missing = {}
        for module in _imported_top_levels(package_dir) - set(sys.stdlib_module_names) - own:
            dists = {canonicalize_name(d) for d in distributions.get(module, [module])}
            if not dists & declared:
                missing[module] = sorted(dists)
        assert not missing, f"{project} imports packages it does not declare: {missing}"


def test_msgf_declares_threshold_search():
    # `msgf search-thresholds` imports it: an install without it is broken (issue 20).
    names = {canonicalize_name(r.name) for r in _requirements("msgf")}
    assert "threshold-search" in names


def test_minimum_constraints_pin_each_lower_bound():
    """constraints/minimum.txt is what `make test-minimum` installs: each direct dependency at
    the lowest version pyproject allows, so the declared bounds are the tested ones."""
    minimum = _pins(REPO / "constraints" / "minimum.txt")
    lower_bounds = {}
    for pyproject in PYPROJECTS.values():
        for text in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
            requirement = Requirement(text)
            name = canonicalize_name(requirement.name)
            if name == "threshold-search":
                continue  # built from this repository, not installed from a registry
            floors = [s.version.removesuffix(".*") for s in requirement.specifier if s.operator in (">=", "==")]
            assert len(floors) == 1, f"{text}: give one lower bound (>= or ==)"
            lower_bounds[name] = floors[0]
    assert set(minimum) == set(lower_bounds)
    for name, floor in lower_bounds.items():
        assert Version(minimum[name]) == Version(floor), \
            f"{name}: pyproject allows {floor}, constraints/minimum.txt tests {minimum[name]}"


def test_pinned_constraints_lie_inside_the_declared_ranges():
    pinned = _pins(REPO / "constraints" / "pinned.txt")
    ranges = {canonicalize_name(r.name): r.specifier for r in _requirements("msgf")}
    checked = [name for name in pinned if name in ranges]
    assert "torch" in checked and "torchvision" in checked
    for name in checked:
        assert ranges[name].contains(pinned[name]), f"{name}=={pinned[name]} is outside {ranges[name]}"


def test_license_file_matches_the_metadata():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert (REPO / "threshold_search" / "LICENSE").read_text() == text
    for project in PYPROJECTS:
        assert metadata.metadata(project)["License-Expression"] == "MIT"


def test_version_flag_reports_the_installed_version():
    done = subprocess.run([sys.executable, "-m", "msgf", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"msgf {metadata.version('msgf')}"
    assert msgf.__version__ == metadata.version("msgf")
