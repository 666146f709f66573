"""What the wheel ships, read from pyproject.toml the way setuptools reads it:
the ``mailer`` package with every template, static file and marker it needs
at run time, and none of the repository's tests, benchmarks or example."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent


def setuptools_config() -> dict:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return pyproject["tool"]["setuptools"]


def test_every_data_file_of_the_package_is_in_the_wheel() -> None:
    shipped: set[Path] = set()
    for package, patterns in setuptools_config()["package-data"].items():
        folder = ROOT.joinpath(*package.split("."))
        for pattern in patterns:
            shipped |= {path for path in folder.glob(pattern) if path.is_file()}
    data = {
        path
        for path in (ROOT / "mailer").rglob("*")
        if path.is_file()
        and path.suffix not in (".py", ".pyc")
        and "__pycache__" not in path.parts
    }

    assert sorted(str(path.relative_to(ROOT)) for path in data - shipped) == []


def test_the_wheel_holds_the_mailer_package_only() -> None:
    from setuptools import find_namespace_packages

    include = setuptools_config()["packages"]["find"]["include"]
    packages = find_namespace_packages(str(ROOT), include=include)

    assert "mailer.testing" in packages
    assert {name.split(".")[0] for name in packages} == {"mailer"}
