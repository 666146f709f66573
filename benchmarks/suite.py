"""Every measurement on one database, in a process of its own.

``run.py`` starts this once per database with ``DATABASE_URL`` set (Django
settings cannot switch databases after setup)::

    python -m benchmarks.suite --database sqlite --out results.json [--quick]

It writes one JSON document; ``run.py`` prints the table. Progress goes to
stderr. A part that fails is recorded as ``{"error": ...}`` and the others
still run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.base import FigureRun
from benchmarks.base import main as run_figure
from benchmarks.procs import (
    PYTHON,
    Child,
    ChildFailed,
    FastSink,
    django_command,
    django_env,
    reaped,
    run_django_command,
)

#: Distinct messages built for the limit; the loop cycles through them.
LIMIT_DISTINCT = 2000
#: The sink accepts at least this many messages per second, or a run fails.
SLOWEST_RATE = 150
#: Longest an expansion may take (100,000 recipients at 1,000/s).
EXPAND_BOUND = 100.0


@dataclass
class Sizes:
    mode: str
    reps: int
    subscribers: int
    expand: list[int]
    limit: int
    send: int
    sql: int
    rss: list[int]
    rss_max_messages: int
    overtake: int
    probes: int
    idle_reps: int
    cheap_reps: int = field(default=3)

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            mode="full",
            reps=3,
            subscribers=100_000,
            expand=[10_000, 100_000],
            limit=6_000,
            send=6_000,
            sql=2_000,
            rss=[1_000, 100_000],
            rss_max_messages=1_000,
            overtake=100_000,
            probes=20,
            idle_reps=3,
            cheap_reps=3,
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            mode="quick",
            reps=1,
            subscribers=10_000,
            expand=[10_000],
            limit=1_500,
            send=1_500,
            sql=1_000,
            rss=[1_000, 10_000],
            rss_max_messages=500,
            overtake=10_000,
            probes=20,
            idle_reps=2,
            cheap_reps=2,
        )


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


SUMMARY_RE = re.compile(
    r"sent (\d+), deferred (\d+), failed (\d+), suppressed (\d+) in ([\d.]+)s"
)


def parse_send_summary(stdout: str) -> dict[str, Any]:
    match = SUMMARY_RE.search(stdout)
    if not match:
        return {"sent": 0, "seconds": 0.0, "summary": stdout.strip()}
    sent, deferred, failed, suppressed = (int(g) for g in match.groups()[:4])
    return {
        "sent": sent,
        "deferred": deferred,
        "failed": failed,
        "suppressed": suppressed,
        "seconds": float(match.group(5)),
        "summary": stdout.strip(),
    }


class Suite(FigureRun):
    tmp_prefix = "mailer-bench-"

    # -- helpers ----------------------------------------------------------------

    def send_timeout(self, messages: int) -> float:
        return 60 + messages / SLOWEST_RATE

    def queue_job(self, count: int) -> None:
        """An empty queue, then one job of ``count`` recipients, expanded."""
        from mailer.jobs.expand import expand_pending_jobs

        self.reset_queue()
        self.create_job(count)
        result = expand_pending_jobs(max_seconds=EXPAND_BOUND)
        if result.queued != count:
            raise AssertionError(f"expanded {result.queued} of {count}")

    @contextlib.contextmanager
    def smtp_port(self, port: int) -> Iterator[None]:
        """Point this process's sending backend at the sink."""
        import copy

        import django
        from django.conf import settings
        from django.test import override_settings

        if django.VERSION >= (6, 1):
            mailers = copy.deepcopy(settings.MAILERS)
            mailers["smtp"]["OPTIONS"]["port"] = port
            overrides = {"MAILERS": mailers}
        else:
            overrides = {"EMAIL_PORT": port}
        with override_settings(**overrides):
            yield

    def all_sent(self, count: int) -> None:
        from mailer.models import Message, MessageStatus

        sent = Message.all_objects.filter(status=MessageStatus.SENT).count()
        if sent != count:
            raise AssertionError(f"{sent} of {count} messages marked sent")

    # -- the run ------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.log(f"migrating ({self.sizes.mode} mode)")
        results = self.prepare()
        results["sizes"] = asdict(self.sizes)
        results["content"] = {
            "text_bytes": len(self.content.body_text.encode()),
            "html_bytes": len(self.content.body_html.encode()),
        }
        parts: list[tuple[str, Callable[[], Any]]] = [
            ("idle", self.idle),
            ("admin", self.admin),
            ("expansion", self.expansion),
            ("limit", self.limit),
            ("sending", self.sending),
            ("sql", self.sql_per_message),
            ("memory", self.memory),
            ("overtaking", self.overtaking),
        ]
        for key, part in parts:
            part_started = time.monotonic()
            try:
                results[key] = part()
            except Exception as error:  # noqa: BLE001 - report, run the rest
                self.log(f"{key} FAILED: {error}")
                results[key] = {"error": traceback.format_exc()}
            results.setdefault("part_seconds", {})[key] = round(
                time.monotonic() - part_started, 1
            )
            self.log(f"{key} done in {time.monotonic() - part_started:.1f} s")
            # Written after every part: a run cut short still reports the rest.
            self.save(results)
        self.reset_queue()
        self.cleanup()
        results["seconds"] = round(time.monotonic() - started, 1)
        return results

    # -- 6. idle cost ---------------------------------------------------------

    def idle(self) -> dict[str, Any]:
        from django.test.utils import CaptureQueriesContext

        from mailer.jobs.expand import expand_pending_jobs
        from mailer.sending.engine import send_queued

        self.reset_queue()
        env = django_env()
        out: dict[str, Any] = {}
        for command in ("send_mail", "process_mail_jobs"):
            runs = [
                run_django_command(command, env=env, timeout=60)
                for _ in range(self.sizes.idle_reps)
            ]
            out[command] = {
                "wall": median([r.wall for r in runs]),
                "cpu": median([r.cpu for r in runs]),
                "peak_rss_mb": median([r.peak_rss_mb for r in runs]),
                "runs": [
                    {"wall": r.wall, "cpu": r.cpu, "stdout": r.stdout.strip()}
                    for r in runs
                ],
            }
            self.log(
                f"idle {command}: {out[command]['wall']:.2f} s wall, "
                f"{out[command]['cpu']:.2f} s CPU"
            )
        for name, function in (
            ("send_queued", send_queued),
            ("expand_pending_jobs", expand_pending_jobs),
        ):
            function()  # warm up
            times = []
            for _ in range(20):
                t = time.perf_counter()
                function()
                times.append(time.perf_counter() - t)
            with CaptureQueriesContext(self.connection) as queries:
                function()
            out[name] = {
                "ms": median(times) * 1000,
                "queries": len(queries),
                "sql": [q["sql"] for q in queries.captured_queries],
            }
        return out

    # -- 2. admin click ------------------------------------------------------------

    def admin(self) -> dict[str, Any]:
        from django.contrib.auth.models import User
        from django.test import Client
        from django.urls import reverse

        from benchmarks.benchapp.models import Subscriber
        from benchmarks.workload import subscribers
        from mailer.models import MessageJob

        count = self.sizes.subscribers
        Subscriber.objects.all().delete()
        Subscriber.objects.bulk_create(
            (Subscriber(**s) for s in subscribers(count)), batch_size=5000
        )
        editor = User.objects.create_superuser(
            "editor", "editor@example.com", "pw", first_name="Eddie", last_name="Tor"
        )
        client = Client()
        client.force_login(editor)
        url = reverse("admin:benchapp_issue_changelist")
        data = {"action": "send_email_update", "_selected_action": [self.issue.pk]}
        confirm, yes = [], []
        # The first round warms templates and caches and is not counted.
        for round_ in range(self.sizes.cheap_reps + 1):
            self.reset_queue()
            t = time.perf_counter()
            response = client.post(url, data)
            confirm_seconds = time.perf_counter() - t
            expected = f'<dd class="mailer-count">{count}</dd>'
            if response.status_code != 200 or expected not in response.content.decode():
                raise AssertionError(
                    f"confirmation page: {response.status_code}, no {expected}"
                )
            t = time.perf_counter()
            response = client.post(url, {**data, "post": "yes"})
            yes_seconds = time.perf_counter() - t
            if response.status_code != 302:
                raise AssertionError(f"'Yes, I'm sure' answered {response.status_code}")
            job = MessageJob.objects.defer("recipients").get()
            if job.recipient_count != count:
                raise AssertionError(f"job has {job.recipient_count} recipients")
            if round_:
                confirm.append(confirm_seconds)
                yes.append(yes_seconds)
            self.log(
                f"admin {count:,}: confirm {confirm_seconds:.2f} s, "
                f"yes {yes_seconds:.2f} s"
            )
        self.reset_queue()
        return {
            "subscribers": count,
            "confirm_seconds": median(confirm),
            "yes_seconds": median(yes),
            "confirm_runs": confirm,
            "yes_runs": yes,
        }

    # -- 3. expansion -----------------------------------------------------------

    def storage(self) -> dict[str, int]:
        """Bytes the database uses now; for SQLite after a WAL checkpoint, and
        counting used pages only, so that pages freed by an earlier DELETE (no
        VACUUM) are not mistaken for room the new rows took."""
        from mailer.models import Message

        table = Message._meta.db_table
        with self.connection.cursor() as cursor:
            if self.vendor == "postgresql":
                cursor.execute(
                    "SELECT pg_total_relation_size(%s), pg_relation_size(%s), "
                    "pg_indexes_size(%s)",
                    [table, table, table],
                )
                total, heap, indexes = cursor.fetchone()
                return {"bytes": total, "heap": heap, "indexes": indexes}
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
            pages = cursor.execute("PRAGMA page_count").fetchone()[0]
            free = cursor.execute("PRAGMA freelist_count").fetchone()[0]
            path = self.connection.settings_dict["NAME"]
            wal = f"{path}-wal"
            file_bytes = os.path.getsize(path) + (
                os.path.getsize(wal) if os.path.exists(wal) else 0
            )
            try:
                cursor.execute(
                    "SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                    "(SELECT name FROM sqlite_master WHERE tbl_name = %s)",
                    [table],
                )
                table_bytes = cursor.fetchone()[0] or 0
            except Exception:  # noqa: BLE001 - dbstat is a compile-time option
                table_bytes = None
            return {
                "bytes": (pages - free) * page_size,
                "file": file_bytes,
                "table": table_bytes,
            }

    def expansion(self) -> dict[str, Any]:
        from django.core.management import call_command

        from mailer.models import Message

        out: dict[str, Any] = {}
        for count in self.sizes.expand:
            runs = []
            for _ in range(self.sizes.cheap_reps):
                self.reset_queue()
                self.create_job(count)
                before = self.storage()
                stdout = io.StringIO()
                t = time.perf_counter()
                call_command(
                    "process_mail_jobs", max_seconds=EXPAND_BOUND, stdout=stdout
                )
                seconds = time.perf_counter() - t
                after = self.storage()
                queued = Message.all_objects.count()
                if queued != count:
                    raise AssertionError(f"expanded {queued} of {count}")
                per_message = {
                    key: (after[key] - before[key]) / count
                    for key in after
                    if after[key] is not None and before[key] is not None
                }
                runs.append(
                    {
                        "seconds": seconds,
                        "rate": count / seconds,
                        "bytes_per_message": per_message["bytes"],
                        "storage_per_message": per_message,
                        "summary": stdout.getvalue().strip(),
                    }
                )
                self.log(
                    f"expansion {count:,}: {count / seconds:,.0f}/s, "
                    f"{per_message['bytes']:.0f} B/message"
                )
            out[str(count)] = {
                "rate": median([r["rate"] for r in runs]),
                "bytes_per_message": median([r["bytes_per_message"] for r in runs]),
                "runs": runs,
            }
        self.reset_queue()
        return out

    # -- 1. the limit -------------------------------------------------------------

    def build_messages(self, count: int) -> tuple[str, dict[str, Any]]:
        """The engine's own bytes for ``count`` recipients of the benchmark
        job, as one ``send_mail`` run sent them, pickled to a file for the
        blast processes."""
        from benchmarks.capture import capture_sent

        path = os.path.join(self.tmp, "messages.pickle")
        self.queue_job(count)
        message = capture_sent(count, path, timeout=self.send_timeout(count))
        self.reset_queue()
        return path, message

    def blast(self, path: str, total: int, processes: int) -> dict[str, Any]:
        timeout = self.send_timeout(total)
        share, extra = divmod(total, processes)
        counts = [share + (1 if i < extra else 0) for i in range(processes)]
        with FastSink(max_seconds=timeout + 60) as sink:
            children = [
                Child(
                    [PYTHON, "-m", "benchmarks.blast", "--port", str(sink.port)]
                    + ["--messages", path, "--count", str(count)]
                    + ["--offset", str(sum(counts[:i]))],
                    env=django_env(),
                    stdin=subprocess.PIPE,
                )
                for i, count in enumerate(counts)
            ]
            with reaped(children):
                for child in children:
                    child.wait_for_output("ready", 60)
                for child in children:
                    child.write("go\n")
                finished = [child.wait(timeout).check("blast") for child in children]
            stats = sink.stop()
        if stats.count != total:
            raise AssertionError(f"sink received {stats.count} of {total}")
        clients = [json.loads(f.stdout.strip().splitlines()[-1]) for f in finished]
        return {
            "rate": stats.rate,
            "window": stats.window,
            # Between its first and last message: start-up excluded.
            "sink_cpu_ms_per_message": stats.cpu_ms_per_message,
            "client_seconds": max(c["seconds"] for c in clients),
            "client_cpu_ms_per_message": sum(c["cpu"] for c in clients) / total * 1000,
        }

    def limit(self) -> dict[str, Any]:
        total = self.sizes.limit
        path, message = self.build_messages(min(total, LIMIT_DISTINCT))
        out: dict[str, Any] = {"messages": total, "message": message}
        for processes, key in ((1, "one"), (2, "two")):
            runs = []
            for _ in range(self.sizes.reps):
                runs.append(self.blast(path, total, processes))
                self.log(f"limit, {processes} connection(s): {runs[-1]['rate']:,.0f}/s")
            out[key] = {
                "rate": median([r["rate"] for r in runs]),
                "sink_cpu_ms_per_message": median(
                    [r["sink_cpu_ms_per_message"] for r in runs]
                ),
                "client_cpu_ms_per_message": median(
                    [r["client_cpu_ms_per_message"] for r in runs]
                ),
                "runs": runs,
            }
        os.unlink(path)
        self.limit_rates = (out["one"]["rate"], out["two"]["rate"])
        return out

    # -- 4. sending -----------------------------------------------------------

    def send_in_process(self, total: int) -> dict[str, Any]:
        from mailer.sending.engine import send_queued

        with FastSink(max_seconds=self.send_timeout(total) + 60) as sink:
            with self.smtp_port(sink.port):
                result = send_queued(max_seconds=self.send_timeout(total))
            stats = sink.stop()
        if result.sent != total or stats.count != total:
            raise AssertionError(
                f"sent {result.sent}, sink got {stats.count} of {total}: "
                f"{result.summary()}"
            )
        self.all_sent(total)
        return {
            "rate": stats.rate,
            "sink_cpu_ms_per_message": stats.cpu_ms_per_message,
            "engine_rate": result.rate,
            "seconds": result.seconds,
            "cpu_ms_per_message": result.cpu_seconds / result.sent * 1000,
            "batches": result.batches,
            "connections": result.connections,
        }

    def send_workers(self, total: int, workers: int) -> dict[str, Any]:
        timeout = self.send_timeout(total)
        with FastSink(max_seconds=timeout + 60) as sink:
            env = django_env(MAILER_BENCH_SMTP_PORT=str(sink.port))
            children = [django_command("send_mail", env=env) for _ in range(workers)]
            with reaped(children):
                finished = [c.wait(timeout).check("send_mail") for c in children]
            stats = sink.stop()
        summaries = [parse_send_summary(f.stdout) for f in finished]
        sent = sum(s["sent"] for s in summaries)
        if sent != total or stats.count != total:
            raise AssertionError(
                f"workers sent {sent}, sink got {stats.count} of {total}: "
                f"{[s['summary'] for s in summaries]}"
            )
        self.all_sent(total)
        result = {
            "rate": stats.rate,
            "sink_cpu_ms_per_message": stats.cpu_ms_per_message,
            "wall": max(f.wall for f in finished),
            "cpu_ms_per_message": sum(f.cpu for f in finished) / total * 1000,
            "peak_rss_mb": max(f.peak_rss_mb or 0 for f in finished),
            "workers": [
                {"sent": s["sent"], "seconds": s["seconds"], "cpu": f.cpu}
                for s, f in zip(summaries, finished, strict=True)
            ],
        }
        if workers == 1:
            result["engine_rate"] = sent / summaries[0]["seconds"]
        return result

    def sending(self) -> dict[str, Any]:
        total = self.sizes.send
        modes: dict[str, Callable[[], dict[str, Any]]] = {
            "in_process": lambda: self.send_in_process(total),
            "send_mail": lambda: self.send_workers(total, 1),
            "workers_2": lambda: self.send_workers(total, 2),
            "workers_4": lambda: self.send_workers(total, 4),
        }
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        # Modes take turns, so that a noisy minute does not hit one mode only.
        for _ in range(self.sizes.reps):
            for mode, measure in modes.items():
                self.queue_job(total)
                runs[mode].append(measure())
                self.log(f"send {mode} {total:,}: {runs[mode][-1]['rate']:,.0f}/s")
        self.reset_queue()
        out: dict[str, Any] = {"messages": total}
        for mode, mode_runs in runs.items():
            out[mode] = {
                "rate": median([r["rate"] for r in mode_runs]),
                "cpu_ms_per_message": median(
                    [r["cpu_ms_per_message"] for r in mode_runs]
                ),
                "runs": mode_runs,
            }
        return out

    def sql_per_message(self) -> dict[str, Any]:
        from django.test.utils import CaptureQueriesContext

        from mailer.sending.engine import send_queued

        total = self.sizes.sql
        self.queue_job(total)
        with FastSink(max_seconds=self.send_timeout(total) + 60) as sink:
            with self.smtp_port(sink.port):
                with CaptureQueriesContext(self.connection) as queries:
                    result = send_queued(max_seconds=self.send_timeout(total))
            sink.stop()
        if result.sent != total:
            raise AssertionError(result.summary())
        kinds = Counter(q["sql"].split()[0].upper() for q in queries.captured_queries)
        self.reset_queue()
        self.log(f"SQL: {len(queries) / total:.2f} statements per message")
        return {
            "messages": total,
            "statements": len(queries),
            "per_message": len(queries) / total,
            "batches": result.batches,
            "by_kind": dict(kinds),
        }

    # -- memory ---------------------------------------------------------------------

    def memory(self) -> dict[str, Any]:
        limit = self.sizes.rss_max_messages
        out: dict[str, Any] = {"max_messages": limit}
        for queued in self.sizes.rss:
            self.queue_job(queued)
            with FastSink(max_seconds=self.send_timeout(limit) + 60) as sink:
                env = django_env(MAILER_BENCH_SMTP_PORT=str(sink.port))
                finished = run_django_command(
                    "send_mail",
                    "--max-messages",
                    str(limit),
                    env=env,
                    timeout=self.send_timeout(limit),
                )
                sink.stop()
            summary = parse_send_summary(finished.stdout)
            if summary["sent"] != min(limit, queued):
                raise AssertionError(summary["summary"])
            out[str(queued)] = {
                "peak_rss_mb": finished.peak_rss_mb,
                "wall": finished.wall,
                "summary": summary["summary"],
            }
            self.log(f"send_mail with {queued:,} queued: {finished.peak_rss_mb:.1f} MB")
        return out

    # -- 5. overtaking ------------------------------------------------------------

    def overtaking(self) -> dict[str, Any]:
        import mailer
        from mailer.models import Message

        pending = Message.all_objects.pending().count()
        if pending < self.sizes.overtake * 0.9:
            self.queue_job(self.sizes.overtake)
            pending = self.sizes.overtake
        bound = self.send_timeout(pending) + 60
        sink = Child(
            [PYTHON, "-m", "benchmarks.marksink", "--mark", "probe-"]
            + ["--max-seconds", str(bound)],
            env=django_env(),
        )
        events = _Events(sink)
        children = [sink]
        delays: list[float] = []
        rng = random.Random(7)
        with reaped(children):
            port = events.wait(lambda e: e["event"] == "ready", 20)["port"]
            worker = django_command(
                "send_mail", env=django_env(MAILER_BENCH_SMTP_PORT=str(port))
            )
            children.append(worker)
            events.wait(lambda e: e["event"] == "first", 60)
            time.sleep(0.5)
            for i in range(self.sizes.probes):
                if not worker.running():
                    break
                rcpt = f"probe-{i}@example.com"
                sent_at = time.time()
                mailer.send_mail(
                    "Your password reset link",
                    "Follow this link to choose a new password.",
                    None,
                    [rcpt],
                    priority="high",
                )
                arrived = events.wait(
                    lambda e, r=rcpt: e["event"] == "marked" and e["rcpt"] == r, 60
                )
                delays.append(arrived["at"] - sent_at)
                # Uneven gaps, so that probes land at every point of a batch.
                time.sleep(0.1 + rng.random() * 0.2)
            still_draining = worker.running()
            # SIGTERM: the worker finishes the message in flight and stops.
            worker.signal(signal.SIGTERM)
            finished = worker.wait(60)
            sink.signal(signal.SIGTERM)
            sink.wait(15)
        self.reset_queue()
        summary = parse_send_summary(finished.stdout)
        self.log(
            f"overtaking: median {median(delays) or 0:.3f} s, "
            f"worst {max(delays, default=0):.3f} s over {len(delays)} probes"
        )
        return {
            "queued": pending,
            "probes": len(delays),
            "median": median(delays),
            "worst": max(delays) if delays else None,
            "delays": delays,
            "still_draining": still_draining,
            "newsletter_sent_meanwhile": summary.get("sent"),
        }


class _Events:
    """The JSON lines the marking sink prints, read as they come."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.seen = 0

    def wait(self, match: Callable[[dict], bool], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            output = self.child.output_so_far()
            # Only complete lines: the last one may still be being written.
            complete = output[: output.rfind("\n") + 1].splitlines()
            for line in complete[self.seen :]:
                self.seen += 1
                event = json.loads(line)
                if match(event):
                    return event
            if time.monotonic() > deadline or not self.child.running():
                raise ChildFailed(f"marking sink: no matching event in {timeout} s")
            time.sleep(0.002)


def main(argv: list[str] | None = None) -> int:
    return run_figure(
        Suite,
        lambda args: Sizes.quick() if args.quick else Sizes.full(),
        argv,
        prog="python -m benchmarks.suite",
    )


if __name__ == "__main__":
    sys.exit(main())
