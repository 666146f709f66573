#!/usr/bin/env python
"""The example newsroom's manage.py (run from anywhere)."""

import os
import sys
from pathlib import Path


def main() -> None:
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    sys.path.insert(1, str(here.parent))  # the mailer package, uninstalled
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "newsroom_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
