"""``python -m benchmarks.measured MODULE ARGS...``: run ``python -m MODULE
ARGS...`` and, at exit, write the process's peak RSS to the JSON file named by
``MAILER_BENCH_MEMORY_FILE``.

Why not ``ru_maxrss`` from ``wait4``: Linux carries a process's RSS high-water
mark across ``fork`` and ``exec``, so a child reports at least the size of
the (large) benchmark process that started it. ``VmHWM`` in
``/proc/self/status`` belongs to the address space ``exec`` created, so it is
the command's own peak.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys


def _memory() -> dict[str, float]:
    found = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0]) / 1024  # kB -> MiB
    return found


def _report(path: str) -> None:
    with open(path, "w") as f:
        json.dump(_memory(), f)


def main() -> None:
    path = os.environ.pop("MAILER_BENCH_MEMORY_FILE", None)
    if path:
        atexit.register(_report, path)
    module = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
