"""A throwaway Dovecot IMAP server for tests, as tests/postgres.py is for
PostgreSQL: Debian's ``dovecot-imapd`` binaries, a generated dovecot.conf in a
temporary directory, IMAPS on a free port of 127.0.0.1 with a self-signed
certificate made by ``openssl``, one user with a password from a passwd-file,
mail in a Maildir under the temporary directory. Stopped and removed after.

    with TemporaryDovecot() as imap:
        imap.host, imap.port, imap.user, imap.password, imap.cafile
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
)
STARTUP_TIMEOUT = 20.0

CONF = """\
base_dir = {tmp}/run
state_dir = {tmp}/state
log_path = {tmp}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{tmp}/cert.pem
ssl_key = <{tmp}/key.pem
mail_location = maildir:{tmp}/mail/%u
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {tmp}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={tmp}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporaryDovecot:
    """Start on ``__enter__``, stop and remove on ``__exit__``.

    :raises FileNotFoundError: Dovecot or openssl is not installed.
    :raises RuntimeError: it did not start within ``STARTUP_TIMEOUT`` seconds
        (the message holds its log).
    """

    user = "bounces"
    password = "secret-bounces"
    host = "127.0.0.1"

    def __enter__(self) -> TemporaryDovecot:
        if DOVECOT is None or shutil.which("openssl") is None:
            raise FileNotFoundError("dovecot (dovecot-imapd) or openssl is missing")
        self.tmp = Path(tempfile.mkdtemp(prefix="mailer-dovecot-"))
        self.tmp.chmod(0o755)
        self.cafile = str(self.tmp / "cert.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(self.tmp / "key.pem"), "-out", self.cafile],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        (self.tmp / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        if os.geteuid() == 0:
            # Dovecot will not give mail access to root; its package's own
            # unprivileged users run the processes.
            internal, login = "dovecot", "dovenull"
            owner = pwd.getpwnam("dovecot")
        else:
            owner = pwd.getpwuid(os.getuid())
            internal = login = owner.pw_name
        mail = self.tmp / "mail"
        mail.mkdir()
        if os.geteuid() == 0:
            os.chown(mail, owner.pw_uid, owner.pw_gid)
        self.port = _free_port()
        conf = self.tmp / "dovecot.conf"
        conf.write_text(
            CONF.format(
                tmp=self.tmp,
                port=self.port,
                uid=owner.pw_uid,
                gid=owner.pw_gid,
                internal_user=internal,
                internal_group=grp.getgrgid(owner.pw_gid).gr_name,
                login_user=login,
            )
        )
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        log = self.log()
        self.__exit__(None, None, None)
        raise RuntimeError(f"Dovecot did not start:\n{log}")

    def log(self) -> str:
        path = self.tmp / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        if self.process.stderr:
            self.process.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
