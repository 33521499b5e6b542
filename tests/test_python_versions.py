"""Every Python 3.11.x runs the suite, including Debian 12's own 3.11.2, whose tarfile has no
extractall(filter=...) (3.11.4+): tests.support.extract_tarball does the same refusal there."""

from __future__ import annotations

import io
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from tests.support import extract_tarball

ROOT = Path(__file__).resolve().parents[1]


def _archive(tmp_path: Path, *members: tuple[str, bytes]) -> Path:
    path = tmp_path / "package.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(params=["with data_filter", "before 3.11.4"])
def tarfile_of(request, monkeypatch):
    """tarfile as this Python has it, and as 3.11.0-3.11.3 have it (no data_filter)."""
    if request.param == "before 3.11.4":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return request.param


def test_npm_tarball_unpacks_on_every_python_311(tarfile_of, tmp_path):
    path = _archive(tmp_path, ("package/package.json", b"{}"), ("package/dist/app.js", b"1"))
    with tarfile.open(path) as archive:
        extract_tarball(archive, tmp_path / "out")
    assert (tmp_path / "out" / "package" / "dist" / "app.js").read_bytes() == b"1"


def test_npm_tarball_member_outside_the_folder_is_refused_on_every_python_311(tarfile_of, tmp_path):
    path = _archive(tmp_path, ("package/package.json", b"{}"), ("../escaped.txt", b"x"))
    with tarfile.open(path) as archive, pytest.raises(tarfile.TarError):
        extract_tarball(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_requires_python_admits_every_311_release():
    """pyproject.toml's requires-python admits 3.11.0 up, and the running Python."""
    requires = SpecifierSet(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    )
    assert "3.11.0" in requires and "3.11.2" in requires
    assert ".".join(map(str, sys.version_info[:3])) in requires
