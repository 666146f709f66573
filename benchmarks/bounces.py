"""Cost of DKIM per message and the bounce-processing rate (issue 18).

    python -m benchmarks.bounces [--messages 2000] [--bounces 2000]

DKIM: signs the bytes of a personalised newsletter email (about 6 KB, text
and HTML, as ``MessageBuilder`` builds them) with an RSA-2048 and an Ed25519
key through ``mailer.dkim.sign``, and reports milliseconds of CPU per message
and messages per second on one core. Bounces: queues a job of N readers in a
throwaway SQLite database (or ``DATABASE_URL``), writes one VERP-addressed
Gmail-shaped DSN per reader, and times ``process_bytes`` over them: parsing,
matching the token, the log row and the don't-send entry, one transaction
per bounce as ``process_bounces`` does. Also parsing alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = (
    ROOT / "tests" / "fixtures" / "bounces" / "gmail" / "dsn-account-does-not-exist.eml"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--bounces", type=int, default=2000)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="mailer-bench-bounces-"))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{tmp / 'bench.sqlite3'}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import override_settings

    call_command("migrate", verbosity=0, interactive=False)
    with override_settings(MAILER_BOUNCE_ADDRESS="bounces@news.example"):
        dkim_rows = bench_dkim(tmp, args.messages)
        bounce_rows = bench_bounces(args.bounces)
    print(f"{'case':<34} {'n':>6} {'ms/msg':>8} {'msg/s':>9}")
    for name, n, seconds in dkim_rows + bounce_rows:
        print(f"{name:<34} {n:>6} {1000 * seconds / n:>8.3f} {n / seconds:>9.0f}")


def newsletter_bytes() -> bytes:
    from django.core.mail import EmailMultiAlternatives

    text = "Dear Ann,\n\n" + ("Today's news, paragraph after paragraph. " * 60)
    html = "<p>Dear Ann,</p>" + ("<p>Today's news, paragraph after paragraph.</p>" * 60)
    email = EmailMultiAlternatives(
        "Issue 7 for Ann", text, "The Daily <news@news.example>", ["ann@example.com"],
        headers={
            "List-Unsubscribe": "<https://news.example/mail/u/abc>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )  # fmt: skip
    email.attach_alternative(html, "text/html")
    return email.message().as_bytes(linesep="\r\n")


def bench_dkim(tmp: Path, n: int) -> list[tuple[str, int, float]]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    from django.test.utils import override_settings

    from mailer.sending import dkim

    data = newsletter_bytes()
    rows = []
    for name, key in (
        ("rsa-2048", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ed25519", ed25519.Ed25519PrivateKey.generate()),
    ):
        path = tmp / f"{name}.pem"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        with override_settings(
            MAILER_DKIM_KEY_FILE=str(path), MAILER_DKIM_DOMAIN="news.example"
        ):
            dkim.sign(data)  # load and cache the key outside the timing
            start = time.process_time()
            for _ in range(n):
                dkim.sign(data)
            rows.append(
                (f"DKIM sign {name} ({len(data)} B)", n, time.process_time() - start)
            )
    return rows


def bench_bounces(n: int) -> list[tuple[str, int, float]]:
    from mailer.bounces import verp
    from mailer.bounces.parse import parse
    from mailer.bounces.process import ProcessResult, process_bytes
    from mailer.jobs.expand import expand_pending_jobs
    from mailer.jobs.services import RenderedEmail, create_job
    from mailer.models import DontSendEntry, Message

    readers = [f"reader{i}@example.org" for i in range(n)]
    create_job(
        content=RenderedEmail(subject="Issue 7", body_text="Dear reader\n"),
        recipients=readers,
        from_email="news@news.example",
    )
    expand_pending_jobs()
    template = SAMPLE.read_bytes()
    mails = [
        template.replace(b"reader@example.org", address.encode()).replace(
            b"bounces@news.example", verp.envelope_sender(pk).encode()
        )
        for pk, address in Message.all_objects.values_list("pk", "to_address")
    ]
    start = time.perf_counter()
    for data in mails:
        parse(data)
    parse_seconds = time.perf_counter() - start
    result = ProcessResult()
    start = time.perf_counter()
    for data in mails:
        process_bytes(data, result)
    process_seconds = time.perf_counter() - start
    assert result.hard == n and DontSendEntry.objects.count() == n, result.summary()
    return [
        ("parse a Gmail DSN", n, parse_seconds),
        ("process a DSN (parse+log+suppress)", n, process_seconds),
    ]


if __name__ == "__main__":
    main()
