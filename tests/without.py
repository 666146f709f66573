"""Run ``django-admin`` as if some packages were not installed.

``python -m tests.without dkim,cryptography check`` puts a finder first on
``sys.meta_path`` that refuses the named top-level packages (and their
submodules) with ``ModuleNotFoundError``, exactly what Python raises for a
package that is not installed, then runs ``django-admin check``. The tests
of the optional extras (``[dkim]``, ``[bounces]``) run the real commands
this way in a subprocess (:func:`run`), so the test process keeps its own
imports.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib.abc import MetaPathFinder
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Refuse(MetaPathFinder):
    """Refuses ``packages`` (top-level names) and everything under them.

    :param packages: top-level package names, e.g. ``{"dkim", "flufl"}``.
    """

    def __init__(self, packages: set[str]) -> None:
        self.packages = packages

    def find_spec(self, fullname: str, path: Sequence[str] | None, target=None):
        """:raises ModuleNotFoundError: ``fullname`` is under a refused
        package; else ``None`` (the next finder looks)."""
        if fullname.partition(".")[0] in self.packages:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def main(argv: list[str]) -> None:
    """``argv``: the comma-separated packages to refuse, then django-admin's
    arguments."""
    packages = set(argv[0].split(","))
    for name in list(sys.modules):
        if name.partition(".")[0] in packages:
            del sys.modules[name]
    sys.meta_path.insert(0, Refuse(packages))
    sys.argv = ["django-admin", *argv[1:]]
    runpy.run_module("django", run_name="__main__", alter_sys=True)


def settings_env(
    directory: Path, base: Mapping[str, str] | None = None, **values: object
) -> dict[str, str]:
    """An environment whose Django settings are the suite's with ``values``
    on top (e.g. ``MAILER_DKIM_KEY_FILE="/tmp/k.pem"``).

    :param directory: where the settings module ``extras_settings.py`` is
        written (a test's ``tmp_path``).
    :param base: the environment to extend (default: this process's), e.g.
        the ``worker_env`` fixture's, which names the test's database.
    :returns: ``base`` with ``DJANGO_SETTINGS_MODULE`` and ``PYTHONPATH``
        selecting that module.
    """
    lines = ["from tests.settings import *  # noqa: F403"]
    lines += [f"{name} = {value!r}" for name, value in values.items()]
    (directory / "extras_settings.py").write_text("\n".join(lines) + "\n")
    paths = [str(directory), str(ROOT), str(ROOT / "example_project")]
    return {
        **(os.environ if base is None else base),
        "DJANGO_SETTINGS_MODULE": "extras_settings",
        "PYTHONPATH": os.pathsep.join(paths),
    }


def run(
    env: Mapping[str, str],
    refuse: str,
    *args: str,
    input: bytes | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``django-admin <args>`` in a subprocess without the packages
    ``refuse`` names (comma-separated top-level names) and wait for it.

    :param input: bytes for its standard input (``process_bounces -``).
    :param timeout: seconds before ``subprocess.TimeoutExpired`` is raised.
    :returns: the finished process, its output decoded (UTF-8).
    """
    done = subprocess.run(
        [sys.executable, "-m", "tests.without", refuse, *args],
        env=dict(env),
        cwd=ROOT,
        input=input,
        capture_output=True,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
