"""Reproducible installs: the locks in requirements/ hold every dependency pyproject.toml asks
for, at an allowed version, each with hashes; make, the Dockerfile and CI install from them;
`make sbom` writes a CycloneDX SBOM of the runtime lock; a hung test fails by pytest-timeout;
`greenlight --version` names the version and the commit."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from greenlight import build
from tests.observability.test_deploy_files import _instructions

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEV_LOCK = ROOT / "requirements" / "dev.txt"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
CHECKOV_LOCK = ROOT / "requirements" / "checkov.txt"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def _entries(lock: Path) -> dict[str, dict]:
    """name -> {version, marker, hashes, via} for each package of a uv-compiled lock."""
    entries: dict[str, dict] = {}
    current = None
    in_via = False
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name = canonicalize_name(match[1])
            current = entries.setdefault(
                name, {"version": match[2], "marker": match[3], "hashes": [], "via": set()}
            )
            in_via = False
            continue
        stripped = line.strip()
        if current is None:
            continue
        if stripped.startswith("--hash=sha256:"):
            current["hashes"].append(stripped.removeprefix("--hash=sha256:").rstrip(" \\"))
        elif stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                current["via"].add(rest)
        elif in_via and stripped.startswith("#   "):
            current["via"].add(stripped.removeprefix("#   ").strip())
    return entries


def _runtime_requirements() -> list[Requirement]:
    return [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]


def _dev_requirements() -> list[Requirement]:
    return [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]]


def _build_requirements() -> list[Requirement]:
    return [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]


LOCKS = {
    "dev": (DEV_LOCK, lambda: _runtime_requirements() + _dev_requirements() + _build_requirements()),
    "runtime": (RUNTIME_LOCK, lambda: _runtime_requirements() + _build_requirements()),
}


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_holds_every_pyproject_dependency_at_an_allowed_version(lock):
    """Each requirement of pyproject.toml (and of [build-system]) is pinned in the lock at a
    version its specifier allows, and so is every package its extras add (pyjwt[crypto],
    uvicorn[standard]): a dependency added or tightened without `make lock` fails here."""
    path, requirements = LOCKS[lock]
    pins = _entries(path)
    wrong = []
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        if name not in pins:
            wrong.append(f"{requirement} is not in {path.name}")
        elif not requirement.specifier.contains(pins[name]["version"], prereleases=True):
            wrong.append(f"{requirement} but {path.name} pins {pins[name]['version']}")
        for extra in requirement.extras:
            for needed in metadata.requires(requirement.name) or []:
                needed = Requirement(needed)
                wanted = needed.marker and needed.marker.evaluate({**default_environment(), "extra": extra})
                if wanted and canonicalize_name(needed.name) not in pins:
                    wrong.append(f"{needed.name} (from {requirement}) is not in {path.name}")
    assert not wrong, "\n".join(wrong) + "\nrun `make lock`"


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_lock_has_no_direct_dependency_pyproject_dropped(lock):
    """What the lock records as asked for by pyproject.toml is exactly what pyproject.toml asks
    for: a dependency removed without relocking fails here."""
    path, requirements = LOCKS[lock]
    direct = {name for name, e in _entries(path).items() if any("pyproject.toml" in v for v in e["via"])}
    asked = {canonicalize_name(r.name) for r in requirements()} - {
        canonicalize_name(r.name) for r in _build_requirements()
    }
    assert direct == asked, {"in the lock only": direct - asked, "in pyproject only": asked - direct}


@pytest.mark.parametrize("path", [DEV_LOCK, RUNTIME_LOCK, CHECKOV_LOCK], ids=lambda p: p.name)
def test_every_locked_package_has_hashes(path):
    """pip installs a lock with --require-hashes: every pin carries at least one sha256."""
    entries = _entries(path)
    assert len(entries) > 10
    missing = [name for name, e in entries.items() if not e["hashes"]]
    assert not missing, missing
    for entry in entries.values():
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in entry["hashes"])


def test_runtime_lock_pins_the_versions_the_dev_lock_pins():
    """The image (runtime lock) runs the versions the tests ran (dev lock)."""
    dev, runtime = _entries(DEV_LOCK), _entries(RUNTIME_LOCK)
    assert runtime.keys() <= dev.keys(), runtime.keys() - dev.keys()
    differ = {
        n: (runtime[n]["version"], dev[n]["version"])
        for n in runtime
        if runtime[n]["version"] != dev[n]["version"]
    }
    assert not differ, differ
    assert "pytest" not in runtime and "ruff" not in runtime


def test_this_environment_was_installed_from_the_lock():
    """The packages the tests run with are the locked versions (make installs from the lock)."""
    environment = default_environment()
    differ = {}
    for name, entry in _entries(DEV_LOCK).items():
        if entry["marker"] and not Requirement(f"x; {entry['marker']}").marker.evaluate(environment):
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            differ[name] = (entry["version"], None)
            continue
        if Version(installed) != Version(entry["version"]):
            differ[name] = (entry["version"], installed)
    assert not differ, f"locked vs installed: {differ}; run `make install`"


def test_minimums_are_past_known_advisories():
    """starlette >= 1.6 and pyjwt >= 2.13: pyproject.toml refuses older releases."""
    by_name = {canonicalize_name(r.name): r for r in _runtime_requirements()}
    assert not by_name["starlette"].specifier.contains("1.5.9")
    assert by_name["starlette"].specifier.contains("1.6.0")
    assert not by_name["pyjwt"].specifier.contains("2.12.9")
    assert by_name["pyjwt"].specifier.contains("2.13.0")


def test_ruff_is_pinned_exactly_in_pyproject_and_the_lock():
    """CI runs `ruff format --check`, whose verdict changes between ruff releases."""
    (ruff,) = [r for r in _dev_requirements() if r.name == "ruff"]
    (spec,) = ruff.specifier
    assert spec.operator == "=="
    assert _entries(DEV_LOCK)["ruff"]["version"] == spec.version


def test_make_install_reinstalls_when_the_lock_changes(tmp_path):
    """The install stamp's name follows the lock's content: a changed lock makes `make install`
    run pip again, from that lock, with --require-hashes."""
    changed = tmp_path / "dev.txt"
    changed.write_text(DEV_LOCK.read_text() + "# changed\n")

    def dry_run(*overrides: str) -> str:
        done = subprocess.run(
            ["make", "--no-print-directory", "-n", "install", *overrides],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    planned = dry_run(f"LOCK={changed}")
    assert f"pip install --quiet --require-hashes -r {changed}" in planned
    stamp = re.search(r"touch (\S+)", planned)[1]
    assert stamp != re.search(r"touch (\S+)", dry_run("-B"))[1]


def test_ci_installs_checkov_and_runs_lint_and_tests():
    script = (ROOT / ".ci" / "run").read_text()
    lines = [line.strip() for line in script.splitlines()]
    assert lines.index("make checkov") < lines.index("make lint") < lines.index("make test")


def test_dockerfile_base_is_pinned_by_digest_and_installs_from_the_lock():
    """FROM names the base by sha256 digest; dependencies come from the runtime lock with
    --require-hashes; the commit is baked in from a build argument."""
    instructions = _instructions()
    (base,) = [args for name, args in instructions if name == "FROM"]
    assert re.fullmatch(r"python:3\.11[\w.-]*@sha256:[0-9a-f]{64}", base), base
    runs = [args for name, args in instructions if name == "RUN"]
    assert any("pip install --require-hashes" in r and "-r requirements/runtime.txt" in r for r in runs)
    assert ("ARG", 'GREENLIGHT_COMMIT=""') in instructions
    assert any("greenlight/BUILD_COMMIT" in r and "GREENLIGHT_COMMIT" in r for r in runs)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "requirements" not in ignored and "greenlight" not in ignored


def test_make_sbom_writes_a_cyclonedx_sbom_of_the_runtime_lock(tmp_path):
    """`make sbom` writes CycloneDX JSON naming every package of the runtime lock, with its
    version and hashes."""
    sbom = tmp_path / "greenlight.cdx.json"
    done = subprocess.run(
        ["make", "--no-print-directory", "sbom", f"SBOM={sbom}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(sbom.read_text())
    assert document["bomFormat"] == "CycloneDX"
    assert document["metadata"]["component"]["name"] == "greenlight"
    components = {canonicalize_name(c["name"]): c for c in document["components"]}
    locked = _entries(RUNTIME_LOCK)
    assert locked.keys() <= components.keys(), locked.keys() - components.keys()
    for name, entry in locked.items():
        assert components[name]["version"] == entry["version"]
        hashes = {
            h["content"] for ref in components[name]["externalReferences"] for h in ref.get("hashes", [])
        }
        assert set(entry["hashes"]) <= hashes, name


def test_a_hung_test_fails_by_timeout(tmp_path):
    """pytest-timeout is on for the suite (300 s a test in pyproject.toml): a test that hangs
    fails with "Timeout" rather than running until CI's limit."""
    assert PYPROJECT["tool"]["pytest"]["ini_options"]["timeout"] == 300
    (tmp_path / "test_hangs.py").write_text("import time\n\ndef test_hangs():\n    time.sleep(600)\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "timeout=1", "test_hangs.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout
    assert "Timeout" in done.stdout


# --- greenlight --version -----------------------------------------------------------------------


def _version_output(cwd: Path, *, path: Path | None = None) -> subprocess.CompletedProcess:
    """`greenlight --version`, with the package imported from `path` when given (a copy of it
    outside any checkout, as in the image)."""
    code = "import sys; from greenlight.cli import main; sys.exit(main(['--version']))"
    if path is not None:
        code = f"import sys; sys.path.insert(0, {str(path)!r}); " + code
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_version_prints_the_package_version_and_the_checkout_commit(tmp_path):
    """From a checkout, the commit is `git rev-parse HEAD`'s."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    done = subprocess.run(
        [sys.executable, "-m", "greenlight", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip() == f"greenlight {PYPROJECT['project']['version']} (commit {head.stdout.strip()})"
    )


def _package_copy(tmp_path: Path, commit_file: str | None) -> Path:
    """The greenlight package copied outside any checkout, as the image holds it."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(
        ROOT / "greenlight", site / "greenlight", ignore=shutil.ignore_patterns("__pycache__", "BUILD_COMMIT")
    )
    if commit_file is not None:
        (site / "greenlight" / "BUILD_COMMIT").write_text(commit_file)
    return site


def test_version_prints_the_commit_baked_in_at_build_time(tmp_path):
    """In the image (no .git), the commit is the one the Dockerfile wrote from its build arg."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    done = _version_output(tmp_path, path=_package_copy(tmp_path, commit + "\n"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"greenlight {PYPROJECT['project']['version']} (commit {commit})"


@pytest.mark.parametrize("commit_file", [None, "\n", "not a commit\n"], ids=["no file", "empty", "garbage"])
def test_version_says_unknown_without_a_baked_commit_or_a_checkout(tmp_path, commit_file):
    """An image built without the build arg, or an installed copy, says "unknown" rather than
    inventing a commit."""
    done = _version_output(tmp_path, path=_package_copy(tmp_path, commit_file))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"greenlight {PYPROJECT['project']['version']} (commit unknown)"


def test_version_module_reports_what_the_cli_prints():
    """greenlight.build is the one place the version and commit are decided."""
    assert build.version() == PYPROJECT["project"]["version"]
    assert build.describe() == f"greenlight {build.version()} (commit {build.commit()})"
