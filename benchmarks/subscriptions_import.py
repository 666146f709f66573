"""CSV import rate of ``mailer.subscriptions``: rows per second for one file
of N subscribers into one list (parse, validate, merge duplicates, check the
erased hashes, ``bulk_create`` in chunks in one transaction).

    python benchmarks/subscriptions_import.py [--rows 100000] [--repeat 3]
    python tests/postgres.py -- python benchmarks/subscriptions_import.py

The database is ``DATABASE_URL`` (a throwaway PostgreSQL from
``tests/postgres.py``), else a fresh SQLite file in a temporary directory.
Each repetition imports into a new, empty list, so every run writes N rows.
1% of the rows repeat an earlier address in another spelling (merged) and
100 addresses were erased before (skipped). Prints one line per repetition
and the median; timed with ``time.perf_counter`` around ``import_csv`` only
(the CSV text is built beforehand, in memory).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def csv_text(rows: int) -> str:
    lines = ["email,name,source"]
    for index in range(rows):
        if index and index % 100 == 0:
            # The same reader as row index - 50, spelled in capitals.
            lines.append(f"Reader{index - 50:07d}@Example.COM,,import")
        else:
            lines.append(f"reader{index:07d}@example.com,Reader {index},import")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp.name}/import.sqlite3"
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    from mailer.subscriptions.importing import import_csv
    from mailer.subscriptions.models import (
        ErasedAddress,
        MailingList,
        Subscription,
        address_digest,
    )

    ErasedAddress.objects.bulk_create(
        [
            ErasedAddress(digest=address_digest(f"reader{i:07d}@example.com"))
            for i in range(1, args.rows, max(1, args.rows // 100))
        ],
        ignore_conflicts=True,
    )
    text = csv_text(args.rows)
    rates = []
    print(f"{connection.vendor}: importing {args.rows:,} CSV rows")
    for run in range(args.repeat):
        mailing_list = MailingList.objects.create(
            name=f"Bench {run}", slug=f"bench-{run}-{time.time_ns()}", list_id="bench"
        )
        started = time.perf_counter()
        result = import_csv(mailing_list, io.StringIO(text))
        seconds = time.perf_counter() - started
        written = Subscription.objects.filter(mailing_list=mailing_list).count()
        assert written == result.created, (written, result)
        rates.append(args.rows / seconds)
        print(
            f"  run {run + 1}: {seconds:.2f} s, {args.rows / seconds:,.0f} rows/s "
            f"({result.summary()})"
        )
    print(f"median: {statistics.median(rates):,.0f} rows/s")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
