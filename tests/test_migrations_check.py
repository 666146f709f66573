"""The models and their migrations agree (the app's and the example's)."""

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration():
    out = StringIO()
    # Our apps only: django-chroniker, with BigAutoField as the project's
    # default, reports migrations of its own that are not ours to make.
    call_command(
        "makemigrations", "mailer", "testapp", "--check", "--dry-run", stdout=out
    )
    assert out.getvalue().startswith("No changes detected")


def test_the_example_newsroom_has_its_migrations(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "example_project" / "manage.py"),
            "makemigrations",
            "mailer",
            "newsroom",
            "--check",
            "--dry-run",
        ],
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes detected" in done.stdout
