"""Where bounce mail comes from: IMAP, a Maildir, or standard input.

Each reader hands every mail to ``handle(data, name) -> bool`` and acts on
the answer: ``True`` (read and recorded) marks the mail as processed,
``False`` leaves it exactly where it was, for a person to look at. Nothing
is ever deleted.
"""

from __future__ import annotations

import imaplib
import mailbox
import ssl
from collections.abc import Callable
from typing import BinaryIO

__all__ = ["Handler", "read_stdin", "read_maildir", "read_imap"]

Handler = Callable[[bytes, str], bool]

#: Upper bound on mails one run reads from a mailbox; the next run goes on.
MAX_PER_RUN = 10_000


def read_stdin(stream: BinaryIO, handle: Handler) -> bool:
    """One mail on ``stream`` (an MTA pipe alias). Return ``handle``'s
    answer; the command exits non-zero for ``False`` so the MTA keeps or
    returns the mail rather than dropping it."""
    return handle(stream.read(), "(stdin)")


def read_maildir(path: str, handle: Handler, *, limit: int = MAX_PER_RUN) -> None:
    """Every new or unseen mail of the Maildir at ``path``
    (:class:`mailbox.Maildir`). A processed mail moves to ``cur`` with the
    ``S`` (seen) flag; one left in place stays as it was, so the next run
    reports it again.

    :raises FileNotFoundError: ``path`` is no Maildir.
    """
    box = mailbox.Maildir(path, factory=None, create=False)
    count = 0
    for key in list(box.iterkeys()):
        if count >= limit:
            break
        message = box.get_message(key)
        if "S" in message.get_flags():
            continue
        count += 1
        with box.get_file(key) as file:
            data = file.read()
        if handle(data, f"maildir:{key}"):
            message.set_subdir("cur")
            message.add_flag("S")
            box[key] = message


def read_imap(
    handle: Handler,
    *,
    host: str,
    port: int = 993,
    user: str,
    password: str,
    folder: str = "INBOX",
    processed_folder: str | None = None,
    cafile: str | None = None,
    timeout: float = 60.0,
    limit: int = MAX_PER_RUN,
) -> None:
    """Every unseen mail of ``folder`` on an IMAP server over TLS (RFC 9051,
    :class:`imaplib.IMAP4_SSL`, certificate checked against ``cafile`` or
    the system's CAs). A processed mail is flagged ``\\Seen`` and, with
    ``processed_folder``, copied there and expunged from ``folder`` (a move:
    the copy exists before the original goes). One left in place is
    flagged nothing, so the next run reports it again.

    :raises imaplib.IMAP4.error: login or a command failed.
    :raises OSError: the server cannot be reached (``timeout`` seconds).
    """
    context = ssl.create_default_context(cafile=cafile)
    with imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=timeout) as imap:
        imap.login(user, password)
        status, _ = imap.select(_quote(folder))
        if status != "OK":
            raise imaplib.IMAP4.error(f"cannot select {folder!r}")
        if processed_folder:
            imap.create(_quote(processed_folder))  # NO when it exists: fine
        # BODY.PEEK does not set \Seen: a mail becomes seen only once it is
        # recorded, so a crash mid-run leaves the rest for the next run.
        _, found = imap.uid("SEARCH", None, "UNSEEN")
        uids = (found[0] or b"").split()[:limit]
        moved = False
        for uid in uids:
            status, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            data = next((p[1] for p in parts or [] if isinstance(p, tuple)), None)
            if status != "OK" or data is None:
                continue
            if not handle(data, f"imap:{folder}/{uid.decode()}"):
                continue
            imap.uid("STORE", uid, "+FLAGS", "(\\Seen)")
            if processed_folder:
                status, _ = imap.uid("COPY", uid, _quote(processed_folder))
                if status == "OK":
                    imap.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
                    moved = True
        if moved:
            imap.expunge()
        imap.close()


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
