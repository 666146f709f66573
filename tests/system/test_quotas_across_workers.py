"""A global rate cap holds across worker processes: it is counted in the
database, so three ``send_mail`` processes together send no faster than the
cap, measured by the SMTP server's own receive times. (The cap's rules in one
process: tests/sending/test_quotas.py.)"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter

import pytest

from mailer.models import RateWindow
from tests.faultlib import addresses, check_ok, fill_single, start


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_global_cap_per_second_holds_across_three_workers(worker_env, smtp_server):
    """R messages per second over three ``send_mail`` processes, counted from
    the server's own receive times. A message whose slot was taken at the end
    of one second can arrive early in the next, so a receive-second may hold
    a little more than R; over the whole run the rate cannot exceed R."""
    rate, total = 8, 64
    stamps: list[float] = []
    smtp_server.on_message = lambda received: stamps.append(time.time())
    fill_single(addresses(total, "three"))
    env = {**worker_env, "MAILER_TEST_RATE_LIMITS": json.dumps({"second": rate})}

    workers = [start(env, "send_mail", "--batch-size", "5") for _ in range(3)]
    outputs = [w.communicate(timeout=120) for w in workers]

    sent = [check_ok(w_done) for w_done in map(_done, workers, outputs)]
    assert sum(s["sent"] for s in sent) == total
    assert min(s["sent"] for s in sent) > 0  # all three took part
    assert sorted(smtp_server.counts.values()) == [1] * total
    per_second = Counter(int(t) for t in stamps)
    assert max(per_second.values()) <= rate + rate // 2, per_second
    # 64 messages at 8 per second span at least 8 distinct seconds.
    assert len(per_second) >= total // rate, per_second
    # The first and last of 8 distinct seconds are at least 7 apart, so the
    # run spans more than 6 s (the first message may come late in its
    # second, the last early in its own).
    assert max(stamps) - min(stamps) > total / rate - 2
    windows = RateWindow.objects.filter(scope="global:second")
    assert max(windows.values_list("count", flat=True)) == rate
    print(f"\nper receive-second: {sorted(per_second.items())}")


def _done(
    process: subprocess.Popen, output: tuple[str, str]
) -> subprocess.CompletedProcess:
    """``process`` as a ``CompletedProcess``, once ``communicate`` returned
    its ``output`` (stdout, stderr), for ``check_ok``."""
    out, err = output
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
