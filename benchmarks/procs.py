"""Child processes for the benchmarks: bounded, with their own resource usage.

Every child is waited for with ``os.wait4``, which returns that child's own
CPU time and peak RSS (``RUSAGE_CHILDREN`` would mix all children together),
and every wait has a deadline after which the child is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class ChildFailed(RuntimeError):
    pass


def django_env(**extra: str) -> dict[str, str]:
    """Environment for ``python -m django ...`` against the benchmark settings
    (``DATABASE_URL`` is inherited from the suite's own environment)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PYTHONDEVMODE", None)
    env.update(extra)
    return env


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    wall: float
    cpu: float
    #: The command's own peak RSS (see measured.py), when it reported one.
    peak_rss_mb: float | None = None

    def check(self, what: str) -> Finished:
        if self.returncode != 0:
            raise ChildFailed(
                f"{what} exited {self.returncode}:\n{self.stdout}\n{self.stderr}"
            )
        return self


class Child:
    """A started process whose output goes to temporary files (no pipe can
    fill up and block it)."""

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stream_stderr: bool = False,
        memory_file: str | None = None,
        own_group: bool = False,
    ) -> None:
        self.memory_file = memory_file
        #: own_group: the child leads a process group, and kill() ends the
        #: whole group (its own children included).
        self.own_group = own_group
        self._out = tempfile.TemporaryFile()
        # stream_stderr: the child's progress lines go straight to ours.
        self._err = None if stream_stderr else tempfile.TemporaryFile()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdin=stdin,
            stdout=self._out,
            stderr=self._err,
            start_new_session=own_group,
        )
        self.result: Finished | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output_so_far(self) -> str:
        """What the child has written to stdout so far (it keeps running)."""
        size = os.fstat(self._out.fileno()).st_size
        return os.pread(self._out.fileno(), size, 0).decode("utf-8", "replace")

    def wait_for_output(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output_so_far():
            if not self.running() or time.monotonic() > deadline:
                self.kill()
                raise ChildFailed(
                    f"{' '.join(self.proc.args)} did not print {text!r}: {self.result}"
                )
            time.sleep(0.005)

    def write(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def running(self) -> bool:
        return self.result is None and self._reap(block=False) is None

    def signal(self, signum: int) -> None:
        if self.result is None:
            try:
                os.kill(self.proc.pid, signum)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL (the whole group for ``own_group``) and reap; idempotent."""
        if self.own_group:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.result is None:
            self.signal(signal.SIGKILL)
            self._reap(block=True)

    def wait(self, timeout: float) -> Finished:
        """Wait at most ``timeout`` seconds, then kill; return what it did."""
        deadline = time.monotonic() + timeout
        while self.result is None:
            if self._reap(block=False) is not None:
                break
            if time.monotonic() >= deadline:
                self.kill()
                self.result.returncode = -9
                raise ChildFailed(
                    f"{' '.join(self.proc.args)} timed out after {timeout:g} s:\n"
                    f"{self.result.stdout}\n{self.result.stderr}"
                )
            time.sleep(0.005)
        return self.result

    def _reap(self, *, block: bool) -> Finished | None:
        if self.result is not None:
            return self.result
        pid, status, usage = os.wait4(self.proc.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return None
        wall = time.perf_counter() - self.started
        returncode = os.waitstatus_to_exitcode(status)
        # Popen must not wait for the pid again.
        self.proc.returncode = returncode
        self.result = Finished(
            returncode=returncode,
            stdout=_read(self._out),
            stderr=_read(self._err),
            wall=wall,
            cpu=usage.ru_utime + usage.ru_stime,
            peak_rss_mb=self._peak_rss(),
        )
        return self.result

    def _peak_rss(self) -> float | None:
        if not self.memory_file or not os.path.exists(self.memory_file):
            return None
        try:
            with open(self.memory_file) as f:
                return json.load(f).get("VmHWM")
        except ValueError:
            return None
        finally:
            os.unlink(self.memory_file)


def _read(f) -> str:
    if f is None:
        return ""
    f.seek(0)
    text = f.read().decode("utf-8", "replace")
    f.close()
    return text


def django_command(*args: str, env: dict[str, str]) -> Child:
    """``manage.py <args>``: ``python -m django`` with the benchmark settings,
    run through ``benchmarks.measured`` so that it reports its peak RSS."""
    fd, memory_file = tempfile.mkstemp(prefix="mailer-bench-rss-", suffix=".json")
    os.close(fd)
    os.unlink(memory_file)
    return Child(
        [PYTHON, "-m", "benchmarks.measured", "django", *args],
        env={**env, "MAILER_BENCH_MEMORY_FILE": memory_file},
        memory_file=memory_file,
    )


def run_django_command(*args: str, env: dict[str, str], timeout: float) -> Finished:
    return django_command(*args, env=env).wait(timeout).check(" ".join(args))


@dataclass
class SinkStats:
    count: int
    connections: int
    first_at: float | None
    last_at: float | None
    #: The sink process's own CPU seconds (known once it has stopped).
    cpu: float | None = None

    @property
    def window(self) -> float:
        if self.first_at is None or self.last_at is None:
            return 0.0
        return self.last_at - self.first_at

    @property
    def rate(self) -> float:
        """Messages per second between the first and the last arrival."""
        if self.count < 2 or self.window <= 0:
            return 0.0
        return (self.count - 1) / self.window


@contextlib.contextmanager
def reaped(children: list[Child]) -> Iterator[list[Child]]:
    """Whatever happens, no child outlives the block."""
    try:
        yield children
    finally:
        for child in children:
            child.kill()


@dataclass
class FastSinkStats(SinkStats):
    #: The sink's CPU seconds between its first and last accepted message.
    cpu_between: float | None = None

    @property
    def cpu_ms_per_message(self) -> float | None:
        """The sink's own CPU per message, start-up and idling excluded."""
        if self.cpu_between is None or self.count < 2:
            return None
        return self.cpu_between / (self.count - 1) * 1000

    @property
    def busy_percent(self) -> float | None:
        """Share of one core the sink used between its first and last
        message: well under 100 means it was not what limited the rate."""
        if self.cpu_between is None or self.window <= 0:
            return None
        return self.cpu_between / self.window * 100


class FastSink:
    """``python -m benchmarks.fastsink`` in its own process (a fresh one per
    measurement): an SMTP server that costs well under the sender's CPU per
    message, optionally waiting ``delay_ms`` before every reply, optionally
    capturing the first ``capture_count`` messages to ``capture``."""

    def __init__(
        self,
        max_seconds: float,
        *,
        delay_ms: float = 0.0,
        capture: str | None = None,
        capture_count: int = 200,
    ) -> None:
        self.dir = tempfile.mkdtemp(prefix="mailer-bench-fastsink-")
        self.ready = os.path.join(self.dir, "port")
        self.stats_file = os.path.join(self.dir, "stats.json")
        args = [PYTHON, "-m", "benchmarks.fastsink", "--ready-file", self.ready]
        args += ["--stats-file", self.stats_file, "--delay-ms", str(delay_ms)]
        args += ["--max-seconds", str(max_seconds)]
        if capture:
            args += ["--capture", capture, "--capture-count", str(capture_count)]
        self.child = Child(args, env=django_env())
        deadline = time.monotonic() + 20
        while not os.path.exists(self.ready):
            if not self.child.running() or time.monotonic() > deadline:
                self.child.kill()
                shutil.rmtree(self.dir, ignore_errors=True)
                raise ChildFailed(f"fast SMTP sink did not start: {self.child.result}")
            time.sleep(0.01)
        with open(self.ready) as f:
            self.port = int(f.read())

    def read_stats(self) -> FastSinkStats:
        try:
            with open(self.stats_file) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return FastSinkStats(0, 0, None, None)
        between = None
        if data["cpu_first"] is not None and data["cpu_last"] is not None:
            between = data["cpu_last"] - data["cpu_first"]
        return FastSinkStats(
            data["count"],
            data["connections"],
            data["first_at"],
            data["last_at"],
            cpu=data["cpu"],
            cpu_between=between,
        )

    def stop(self) -> FastSinkStats:
        """Stop (SIGTERM: it writes its final stats and capture)."""
        self.child.signal(signal.SIGTERM)
        self.child.wait(15).check("fast SMTP sink")
        return self.read_stats()

    def __enter__(self) -> FastSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.child.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
