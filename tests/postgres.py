# Why not pytest-postgresql (weighed for issue 16, item 9): its postgresql_proc
# is a session fixture inside pytest, but tests/settings.py and the worker
# processes the tests start read DATABASE_URL from the environment before any
# fixture runs, and the benchmarks and tests/legacy scripts need a server with
# no pytest at all. This file stays for them anyway, so the plugin would add a
# dependency without removing code.
"""A throwaway PostgreSQL server for tests and benchmarks.

The queue's claim logic (``SELECT ... FOR UPDATE SKIP LOCKED``, leases, several
worker processes) only shows its real behaviour on PostgreSQL, and we want
that in every developer's test run without asking for a configured server.
So this starts a private cluster in a temporary directory, tuned for speed
over durability (fsync, synchronous_commit and full_page_writes off: a crash
loses only test data; ``durable=True`` keeps PostgreSQL's stock settings, as
the benchmarks do), on a free port of 127.0.0.1, and removes it afterwards.

As a library::

    with TemporaryPostgres() as pg:
        os.environ["DATABASE_URL"] = pg.url
        ...
        pg.restart()  # "PostgreSQL restarted mid-run"

As a wrapper around a command (the tox "-postgres" envs)::

    python tests/postgres.py -- python -m pytest -W error

It needs only the server binaries (Debian's ``postgresql`` package) and the
standard library; it is a plain script so that it also runs as
``python tests/postgres.py`` without ``tests`` being importable.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType

POSTGRES_USER = "postgres"
DEFAULT_DATABASE = "mailer_test"

#: Bound for starting, restarting and stopping the server.
STARTUP_TIMEOUT = 30.0

#: Bound for the command run by the CLI (override with --timeout).
COMMAND_TIMEOUT = 2 * 60 * 60.0

# Written into postgresql.conf. The port is passed on the command line instead
# (pg_ctl -o), because a retry after a port clash needs another one and
# pg_ctl restart replays the command line from postmaster.opts.
SETTINGS = """
# Added by tests/postgres.py: a disposable cluster.
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
# Tests run several worker processes, each with its own connections.
max_connections = 100
"""

#: Added unless ``durable=True``: fast rather than durable (a crash loses only
#: test data). The benchmarks measure with PostgreSQL's stock settings instead,
#: since no site runs these in production.
NOT_DURABLE = """fsync = off
synchronous_commit = off
full_page_writes = off
"""

# Runs in its own session, detached from the terminal, and holds the read end
# of a pipe whose write end only the owning process has. When the owner exits
# however it exits (even SIGKILL, or tox's terminate-then-kill on Ctrl-C),
# the read returns EOF and the watchdog stops the cluster and removes it, so
# no postgres is ever left running. After a normal stop() it finds nothing.
WATCHDOG = """
import os, shutil, subprocess, sys
pg_ctl, datadir, tempdir, *as_postgres = sys.argv[1:]
sys.stdin.buffer.read()
if os.path.exists(os.path.join(datadir, "postmaster.pid")):
    subprocess.run(
        [*as_postgres, pg_ctl, "-D", datadir, "-m", "immediate", "-w", "-t", "30",
         "stop"],
        cwd=tempdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, timeout=60,
    )
shutil.rmtree(tempdir, ignore_errors=True)
"""


class PostgresNotFound(RuntimeError):
    """The PostgreSQL server binaries (initdb, pg_ctl) are not installed."""


class PostgresError(RuntimeError):
    """A PostgreSQL command failed; the message includes its output."""


def find_bindir() -> Path:
    """Where initdb and pg_ctl live: $PG_BINDIR, Debian's newest, or PATH.

    Debian installs server binaries in /usr/lib/postgresql/<major>/bin, off
    PATH, so look there first; pg_config --bindir covers other layouts.
    """
    override = os.environ.get("PG_BINDIR")
    if override:
        if (Path(override) / "initdb").exists():
            return Path(override)
        raise PostgresNotFound(f"PG_BINDIR={override} has no initdb")
    debian = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin")
        if (path / "initdb").exists() and path.parent.name.isdigit()
    ]
    if debian:
        return max(debian, key=lambda path: int(path.parent.name))
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=30
        )
        bindir = Path(result.stdout.strip())
        if result.returncode == 0 and (bindir / "initdb").exists():
            return bindir
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PostgresNotFound(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install "
        "Debian's postgresql package (apt-get install postgresql), or set "
        "PG_BINDIR to the directory holding initdb."
    )


def _free_port(host: str) -> int:
    # Another process may take it before postgres binds; start() retries.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    # PGHOST, PGOPTIONS, PGSERVICE, ... in the caller's environment must not
    # redirect or reconfigure our own tool calls.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


class TemporaryPostgres:
    """A private PostgreSQL cluster in a temporary directory; a context manager.

    ``url`` is ``postgres://postgres@127.0.0.1:PORT/mailer_test``; connections
    need no password (trust authentication, reachable only from this host).
    """

    def __init__(
        self,
        database: str = DEFAULT_DATABASE,
        *,
        host: str = "127.0.0.1",
        bindir: str | Path | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        durable: bool = False,
    ) -> None:
        self.database = database
        self.host = host
        self.bindir = Path(bindir) if bindir else find_bindir()
        self.startup_timeout = startup_timeout
        #: False (tests): fsync, synchronous_commit, full_page_writes off.
        self.durable = durable
        self.port = 0
        self.version = ""
        self.tempdir: Path | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    # -- public API ----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"postgres://{POSTGRES_USER}@{self.host}:{self.port}/{self.database}"

    @property
    def datadir(self) -> Path:
        assert self.tempdir is not None, "not started"
        return self.tempdir / "data"

    @property
    def log_path(self) -> Path:
        assert self.tempdir is not None, "not started"
        return self.tempdir / "postgres.log"

    def start(self) -> None:
        """initdb, start on a free port, wait until it answers, create the DB."""
        if self.tempdir is not None:
            raise RuntimeError("TemporaryPostgres is already running")
        self.version = self._major_version()
        self.tempdir = Path(tempfile.mkdtemp(prefix="mailer-pg-"))
        try:
            if os.geteuid() == 0:
                # initdb refuses to run as root, so the cluster belongs to the
                # postgres user, who must own the directory.
                import pwd

                account = pwd.getpwnam(POSTGRES_USER)
                os.chown(self.tempdir, account.pw_uid, account.pw_gid)
            self._start_watchdog()
            self._initdb()
            self._start_postmaster()
            self._tool(
                "createdb",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                POSTGRES_USER,
                self.database,
            )
        except BaseException:
            self.stop()
            raise

    def restart(self) -> None:
        """Restart with ``pg_ctl restart -m fast``: open connections are cut."""
        self._pg_ctl("-m", "fast", "restart")
        self._wait_until_ready()

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its files; idempotent."""
        if self._finalizer is not None:
            self._finalizer()
        elif self.tempdir is not None:
            # start() failed before the cluster existed.
            shutil.rmtree(self.tempdir, ignore_errors=True)
        self._finalizer = None
        self._watchdog = None
        self.tempdir = None

    def __enter__(self) -> TemporaryPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------

    def _as_postgres(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresNotFound("running as root needs runuser (util-linux)")
        return [runuser, "-u", POSTGRES_USER, "--"]

    def _major_version(self) -> str:
        output = self._run([str(self.bindir / "postgres"), "--version"])
        match = re.search(r"\(PostgreSQL\) (\d+)", output)
        return match.group(1) if match else output.strip()

    def _run(
        self, args: list[str], *, cwd: Path | None = None, timeout: float = 0
    ) -> str:
        try:
            result = subprocess.run(
                args,
                cwd=cwd,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout or self.startup_timeout,
            )
        except subprocess.TimeoutExpired as error:
            raise PostgresError(f"{' '.join(args)} timed out") from error
        if result.returncode != 0:
            raise PostgresError(
                f"{' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{self._log_tail()}"
            )
        return result.stdout

    def _server_command(self, program: str, *args: str, timeout: float = 0) -> str:
        # initdb/pg_ctl run as the cluster's owner, from a directory it can read.
        return self._run(
            [*self._as_postgres(), str(self.bindir / program), *args],
            cwd=self.tempdir,
            timeout=timeout,
        )

    def _pg_ctl(self, *args: str) -> str:
        # Always pass -l: without it the postmaster inherits pg_ctl's stdout
        # and stderr, i.e. our capture pipes, and subprocess.run() would wait
        # for their EOF as long as the server runs.
        return self._server_command(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(int(self.startup_timeout)),
            *args,
            timeout=self.startup_timeout + 10,
        )

    def _tool(self, program: str, *args: str) -> str:
        # Client tools connect over TCP with trust auth; any OS user will do.
        return self._run([str(self.bindir / program), *args])

    def _initdb(self) -> None:
        common = ["-D", str(self.datadir), "-U", POSTGRES_USER, "--auth=trust"]
        common += ["-E", "UTF8", "--no-sync"]
        # C.UTF-8 sorts bytewise (fast, deterministic) while UPPER()/LOWER(),
        # which Django's __iexact uses, still know non-ASCII letters like a
        # production en_US.UTF-8 database. Systems without it get plain C.
        try:
            self._server_command("initdb", *common, "--locale=C.UTF-8", timeout=120)
        except PostgresError:
            shutil.rmtree(self.datadir, ignore_errors=True)
            self._server_command("initdb", *common, "--no-locale", timeout=120)
        settings = SETTINGS.format(socket_dir=self.tempdir)
        if not self.durable:
            settings += NOT_DURABLE
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(settings)

    def _start_postmaster(self) -> None:
        # A free port can be taken between our probe and postgres' bind; a
        # few attempts with fresh ports make that race harmless.
        for attempt in range(3):
            self.port = _free_port(self.host)
            try:
                self._pg_ctl("-o", f"-p {self.port}", "start")
                break
            except PostgresError as error:
                if attempt == 2 or "could not bind" not in str(error):
                    raise
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            result = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-t", "1"]
                + ["-h", self.host, "-p", str(self.port), "-U", POSTGRES_USER],
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
            )
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"PostgreSQL did not accept connections on port {self.port} "
                    f"within {self.startup_timeout:g} s{self._log_tail()}"
                )
            time.sleep(0.1)

    def _start_watchdog(self) -> None:
        assert self.tempdir is not None
        watchdog = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WATCHDOG,
                str(self.bindir / "pg_ctl"),
                str(self.datadir),
                str(self.tempdir),
                *self._as_postgres(),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=_clean_env(),
        )
        self._watchdog = watchdog
        # Runs on stop(), or at interpreter exit if stop() was never called.
        self._finalizer = weakref.finalize(
            self,
            _shutdown,
            self._as_postgres(),
            str(self.bindir / "pg_ctl"),
            str(self.datadir),
            str(self.log_path),
            str(self.tempdir),
            watchdog,
        )

    def _log_tail(self) -> str:
        if self.tempdir is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()[-20:]
        return "\nserver log:\n" + "\n".join(lines) if lines else ""


def _shutdown(
    as_postgres: list[str],
    pg_ctl: str,
    datadir: str,
    log_path: str,
    tempdir: str,
    watchdog: subprocess.Popen[bytes],
) -> None:
    """Stop the cluster, delete it, and release the watchdog (all bounded).

    A plain function (not a method) so weakref.finalize holds no reference to
    the TemporaryPostgres object.
    """
    if os.path.exists(os.path.join(datadir, "postmaster.pid")):
        for mode in ("fast", "immediate"):
            result = subprocess.run(
                [*as_postgres, pg_ctl, "-D", datadir, "-l", log_path]
                + ["-m", mode, "-w", "-t", str(int(STARTUP_TIMEOUT)), "stop"],
                cwd=tempdir,
                env=_clean_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=STARTUP_TIMEOUT + 10,
            )
            if result.returncode == 0:
                break
    shutil.rmtree(tempdir, ignore_errors=True)
    # EOF on its stdin: the watchdog finds nothing left to do and exits.
    if watchdog.stdin is not None:
        watchdog.stdin.close()
    try:
        watchdog.wait(timeout=STARTUP_TIMEOUT)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait(timeout=STARTUP_TIMEOUT)


# -- command line ---------------------------------------------------------------

USAGE = """\
usage: python tests/postgres.py [--timeout SECONDS] -- COMMAND [ARGS...]

Start a throwaway PostgreSQL server, run COMMAND with DATABASE_URL pointing at
it, stop the server (even if COMMAND fails or is interrupted) and exit with
COMMAND's exit code.
"""


def _parse_argv(argv: Sequence[str]) -> tuple[float, list[str]]:
    args = list(argv)
    timeout = COMMAND_TIMEOUT
    while args and args[0] != "--":
        if args[0] == "--timeout" and len(args) > 1:
            timeout = float(args[1])
            del args[:2]
        elif args[0].startswith("--timeout="):
            timeout = float(args.pop(0).partition("=")[2])
        elif args[0] in ("-h", "--help"):
            print(USAGE, end="")
            raise SystemExit(0)
        else:
            break
    if args and args[0] == "--":
        del args[0]
    if not args or not timeout > 0:
        print(USAGE, end="", file=sys.stderr)
        raise SystemExit(2)
    return timeout, args


def _ignore(signum: int, frame: FrameType | None) -> None:
    pass


def run_with_postgres(command: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> int:
    """Run ``command`` with DATABASE_URL set to a fresh server; its exit code.

    SIGTERM and SIGHUP are passed on to the command. SIGINT is not: Ctrl-C in
    a terminal already reaches the whole foreground process group, and a
    second SIGINT would cut pytest's own clean-up short. The command is
    bounded by ``timeout`` (SIGTERM, then SIGKILL; exit status 124 like
    timeout(1)).
    """
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    handled = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in handled}
    pg = TemporaryPostgres()
    pg.start()
    try:
        print(f"PostgreSQL {pg.version} on {pg.host}:{pg.port}", file=sys.stderr)
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGHUP, forward)
        # A do-nothing handler, not SIG_IGN: an ignored SIGINT would be
        # inherited by the command, and Ctrl-C would no longer stop it.
        signal.signal(signal.SIGINT, _ignore)
        try:
            child = subprocess.Popen(
                list(command), env={**os.environ, "DATABASE_URL": pg.url}
            )
        except OSError as error:
            print(f"cannot run {command[0]}: {error}", file=sys.stderr)
            return 127
        try:
            returncode = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"{command[0]} timed out after {timeout:g} s", file=sys.stderr)
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=30)
            return 124
    finally:
        # Stop before restoring the handlers, so a Ctrl-C now can't cut the
        # shutdown short (the watchdog would still clean up, but later).
        pg.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print(f"PostgreSQL on port {pg.port} stopped", file=sys.stderr)
    # Killed by a signal: report it the way shells do.
    return 128 - returncode if returncode < 0 else returncode


def main(argv: Sequence[str] | None = None) -> int:
    timeout, command = _parse_argv(sys.argv[1:] if argv is None else argv)
    try:
        return run_with_postgres(command, timeout)
    except (PostgresNotFound, PostgresError) as error:
        print(f"tests/postgres.py: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
