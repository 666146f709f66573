"""The benchmarks' own tools: the fast SMTP sink, the plain-loop sender over N
connections, the relay table, the durable PostgreSQL settings, the relay and
desk-report figures end to end at toy size. Their speed is measured by
``benchmarks/run.py``; here only that they do what they say (a sink that
miscounted or changed the bytes would make every ratio wrong)."""

from __future__ import annotations

import email
import email.policy
import json
import os
import pickle
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import desk_report
from benchmarks.procs import FastSink
from benchmarks.relay import table
from benchmarks.report import render_table

ROOT_ARGS = {"cwd": str(Path(__file__).resolve().parent.parent)}


def _message(n: int) -> bytes:
    return (
        f"From: news@example.com\r\nTo: reader{n}@example.com\r\n"
        f"Subject: Issue {n}\r\nMessage-ID: <{n}@example.com>\r\n\r\n"
        "First line\r\n.a line that starts with a dot\r\n..two dots\r\n.\r\n"
        + "x" * 70
        + "\r\n"
    ).encode()


def test_fast_sink_counts_and_captures_the_exact_bytes(tmp_path):
    capture = tmp_path / "captured.pickle"
    with FastSink(60, capture=str(capture), capture_count=2) as sink:
        smtp = smtplib.SMTP("127.0.0.1", sink.port, timeout=10)
        code, features = smtp.ehlo()
        assert code == 250
        assert b"8BITMIME" in features
        assert smtp.noop()[0] == 250
        smtp.mail("a@example.com")
        smtp.rset()  # an abandoned transaction is not a message
        for n in range(3):
            smtp.sendmail("news@example.com", [f"reader{n}@example.com"], _message(n))
        # An empty body is a message too (".\r\n" right after DATA).
        assert smtp.docmd("MAIL FROM:<a@example.com>")[0] == 250
        assert smtp.docmd("RCPT TO:<b@example.com>")[0] == 250
        assert smtp.docmd("DATA")[0] == 354
        smtp.send(b".\r\n")
        assert smtp.getreply()[0] == 250
        assert smtp.docmd("DATA")[0] == 503  # no RCPT in this transaction
        smtp.quit()
        stats = sink.stop()
    assert stats.count == 4
    assert stats.connections == 1
    assert stats.cpu_ms_per_message is not None
    with open(capture, "rb") as f:
        captured = pickle.load(f)
    # Only the first capture_count are kept, dot-unstuffed: what was sent.
    assert [c[:2] for c in captured] == [
        ("news@example.com", ["reader0@example.com"]),
        ("news@example.com", ["reader1@example.com"]),
    ]
    assert [c[2] for c in captured] == [_message(0), _message(1)]
    parsed = email.message_from_bytes(captured[1][2], policy=email.policy.default)
    assert parsed["Subject"] == "Issue 1"
    assert ".a line that starts with a dot" in parsed.get_content()


def test_fast_sink_with_a_delay_still_answers_many_connections(tmp_path):
    with FastSink(60, delay_ms=5) as sink:
        clients = [smtplib.SMTP("127.0.0.1", sink.port, timeout=10) for _ in range(3)]
        for n, smtp in enumerate(clients):
            smtp.sendmail("news@example.com", [f"r{n}@example.com"], _message(n))
            smtp.quit()
        stats = sink.stop()
    assert (stats.count, stats.connections) == (3, 3)


@pytest.mark.parametrize("delay_ms", [0, 5])
def test_fast_sink_answers_a_pipelined_group_in_order(delay_ms):
    # RFC 2920: MAIL, RCPTs and DATA in one write get their replies in
    # order (the 354 last), also when every reply waits.
    with FastSink(60, delay_ms=delay_ms) as sink:
        smtp = smtplib.SMTP("127.0.0.1", sink.port, timeout=10)
        assert smtp.ehlo()[0] == 250
        assert smtp.has_extn("pipelining")
        smtp.send(
            b"MAIL FROM:<news@example.com>\r\nRCPT TO:<a@example.com>\r\n"
            b"RCPT TO:<b@example.com>\r\nDATA\r\n"
        )
        assert [smtp.getreply()[0] for _ in range(4)] == [250, 250, 250, 354]
        smtp.send(_message(1).replace(b"\r\n.", b"\r\n..") + b".\r\n")
        assert smtp.getreply()[0] == 250
        smtp.quit()
        stats = sink.stop()
    assert stats.count == 1


@pytest.mark.slow
def test_blast_over_several_connections_sends_the_count_once(tmp_path):
    path = tmp_path / "messages.pickle"
    messages = [
        ("news@example.com", [f"r{n}@example.com"], _message(n)) for n in range(5)
    ]
    path.write_bytes(pickle.dumps(messages))
    with FastSink(60) as sink:
        blast = subprocess.run(
            [sys.executable, "-m", "benchmarks.blast", "--port", str(sink.port)]
            + ["--messages", str(path), "--count", "23", "--connections", "4"],
            input="go\n",
            capture_output=True,
            text=True,
            timeout=60,
            **ROOT_ARGS,
        )
        stats = sink.stop()
    assert blast.returncode == 0, blast.stderr
    assert '"sent": 23' in blast.stdout
    assert (stats.count, stats.connections) == (23, 4)


RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def test_suite_table_rebuilt_from_committed_results_matches_their_table():
    """The suite's table is data (benchmarks/report.py): rendered again from
    the committed run the README quotes, every row and the targets come out
    as that run printed them (the header names the sink of the day, so it is
    left out)."""
    results = json.loads((RESULTS / "2026-11-29-full.json").read_text())
    text, targets = render_table(results)

    def rows(table: str) -> list[str]:
        lines = [line.rstrip() for line in table.splitlines()]
        return lines[lines.index("") + 1 :]

    assert rows(text) == rows(results["table"])
    assert targets == results["targets"]
    assert sum(not t["met"] for t in targets) == 2


def test_suite_figures_each_give_the_key_the_table_reads():
    """One module per figure; together they fill every key the committed
    results hold for the suite, in the order the run measures them."""
    from benchmarks.suite import FIGURES

    keys = [figure.KEY for figure in FIGURES]
    stored = json.loads((RESULTS / "2026-11-29-full.json").read_text())
    for database in stored["databases"].values():
        assert set(keys) <= set(database)
    assert len(set(keys)) == len(keys)
    assert all(callable(figure.measure) for figure in FIGURES)


def _case(rate: float, **extra: object) -> dict[str, object]:
    return {"rate": rate, "messages": 1000, "server_busy_percent": 10.0, **extra}


def test_relay_table_gives_ratios_to_the_matching_loop_and_checks_targets():
    results = {
        "sqlite": {
            "sizes": {"delays": [25.0], "connections": 8},
            "durability": {"journal_mode": "wal", "synchronous": "FULL"},
            "connections_option": True,
            "delays": {
                "25": {
                    "limit_1": _case(10.0, sender_cpu_ms_per_message=0.6),
                    "limit_n": _case(80.0),
                    "send_mail_1": _case(9.0, worker_cpu_ms_per_message=1.0),
                    "send_mail_n": _case(40.0, drained=False, queued=1600),
                }
            },
        },
        "postgres": {
            "sizes": {"delays": [25.0], "connections": 8},
            "connections_option": False,
            "delays": {"25": {"limit_1": _case(10.0), "limit_n": _case(80.0)}},
        },
    }
    text, rows = table(results)
    by_label = {row["label"]: row["cells"] for row in rows}
    one = by_label["one send_mail, 1 connection"]["sqlite"]
    assert (one["text"], one["value"]) == ("9.0/s 0.90x", 0.9)
    many = by_label["one send_mail --connections 8"]
    # 40/s of the 8-connection loop's 80/s misses 0.8x; cut short, so marked.
    assert many["sqlite"] == {
        "text": "40.0/s 0.50x (cut) MISS",
        "value": 0.5,
        "met": False,
    }
    assert many["postgres"]["text"] == "n/a (no --connections)"
    projected = by_label["100,000 readers: send_mail, 8 connections"]["sqlite"]
    assert (projected["text"], projected["met"]) == ("42 min MISS", False)
    assert "journal_mode=wal, synchronous=FULL" in text
    assert "postgres: send_mail has no --connections option here" in text


@pytest.mark.slow
def test_benchmark_postgres_runs_with_stock_durable_settings():
    postgres = pytest.importorskip("tests.postgres")
    psycopg = pytest.importorskip("psycopg")
    try:
        pg = postgres.TemporaryPostgres(durable=True)
        pg.start()
    except (postgres.PostgresNotFound, postgres.PostgresError) as error:
        pytest.skip(f"no PostgreSQL: {error}")
    try:
        with psycopg.connect(pg.url.replace("postgres://", "postgresql://")) as conn:
            values = [
                conn.execute(f"SHOW {name}").fetchone()[0]
                for name in ("fsync", "synchronous_commit", "full_page_writes")
            ]
    finally:
        pg.stop()
    assert values == ["on", "on", "on"]


@pytest.mark.slow
def test_relay_figure_drains_the_newsletter_and_reports_every_case(tmp_path):
    """End to end at toy size (SQLite), so that a change to ``send_mail``'s
    output or options that breaks the benchmark shows up in the suite."""
    out = tmp_path / "relay.json"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/relay.sqlite3",
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "PYTHONPATH": ROOT_ARGS["cwd"],
    }
    env.pop("MAILER_BENCH_TUNED", None)
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.relay", "--database", "sqlite"]
        + ["--out", str(out), "--delays", "0", "--seconds", "1"]
        + ["--messages", "60", "--connections", "2"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        **ROOT_ARGS,
    )
    assert finished.returncode == 0, finished.stderr
    results = json.loads(out.read_text())
    assert results["durability"] == {"journal_mode": "wal", "synchronous": "FULL"}
    assert results["message"]["distinct"] == 200
    cases = results["delays"]["0"]
    expected = {"limit_1", "limit_n", "send_mail_1"}
    if results["connections_option"]:
        expected.add("send_mail_n")
    assert set(cases) == expected
    for name in expected:
        assert "error" not in cases[name], cases[name]
        assert cases[name]["rate"] > 0
        assert cases[name]["server_cpu_ms_per_message"] > 0
    assert cases["limit_n"]["connections"] == 2
    drained = cases["send_mail_1"]
    assert (drained["messages"], drained["drained"]) == (60, True)
    assert drained["reported_sent"] == 60


@pytest.mark.slow
def test_the_report_figure_times_the_pages_and_reads_the_log_by_its_index(tmp_path):
    """The benchmark end to end at toy size (SQLite): every page answered,
    the table has its rows, and the charts' query reads the report index."""
    out = tmp_path / "report.json"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/report.sqlite3",
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "PYTHONPATH": ROOT_ARGS["cwd"],
    }
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.desk_report", "--database", "sqlite"]
        + ["--out", str(out), "--quick", "--readers", "300"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        **ROOT_ARGS,
    )

    assert finished.returncode == 0, finished.stderr
    results = json.loads(out.read_text())
    assert set(results["seconds_best"]) == {
        "report",
        "reader_search",
        "progress_json",
        "job_list",
        "counts",
        "charts",
        "sample_rebuild",
        "delete_confirmation",
        "delete",
    }
    assert "COVERING INDEX mailer_log_job_report" in results["charts_plan"]
    text, rows = desk_report.table({"sqlite": results})
    assert "Job report, 300 readers" in text
    assert rows[0]["label"] == "report page GET"
    assert rows[0]["cells"]["sqlite"]["value"] == results["seconds_best"]["report"]
