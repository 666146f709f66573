"""mailer.waiting: every wait that a stop request, a wake-up or a deadline cuts
short. The ``wait`` passed in records its slices instead of sleeping long."""

from __future__ import annotations

import time

import pytest

from mailer.waiting import out_of_time, wait_until


class Recorder:
    """A ``wait`` that sleeps briefly, records each slice, and reports a
    wake-up on call number ``wake_on`` (never when None)."""

    def __init__(self, wake_on: int | None = None) -> None:
        self.slices: list[float] = []
        self.wake_on = wake_on

    def __call__(self, seconds: float) -> bool:
        self.slices.append(seconds)
        time.sleep(min(seconds, 0.001))
        return len(self.slices) == self.wake_on


def test_a_stop_request_ends_the_wait_before_it_starts():
    wait = Recorder()
    assert wait_until(60, should_stop=lambda: True, wait=wait) is False
    assert wait.slices == []


def test_a_deadline_in_the_past_ends_the_wait_at_once():
    wait = Recorder()
    assert wait_until(60, deadline=time.monotonic() - 1, wait=wait) is False
    assert wait.slices == []


def test_a_wake_up_ends_the_wait_and_is_reported():
    wait = Recorder(wake_on=3)
    assert wait_until(60, slice_seconds=0.5, wait=wait) is True
    assert len(wait.slices) == 3
    assert max(wait.slices) <= 0.5


def test_a_stop_request_is_seen_within_one_slice():
    wait = Recorder()
    answers = iter([False, False, True])
    stopped = wait_until(
        60, slice_seconds=1, should_stop=lambda: next(answers), wait=wait
    )
    assert stopped is False  # stopped, not woken
    assert wait.slices == [1, 1]


def test_the_deadline_caps_every_slice():
    wait = Recorder()
    assert wait_until(60, deadline=time.monotonic() + 0.05, wait=wait) is False
    assert wait.slices
    assert max(wait.slices) <= 0.05


@pytest.mark.parametrize(
    "deadline, stop, expected",
    [
        (None, False, False),
        (None, True, True),
        (-1.0, False, True),  # relative to now
        (60.0, False, False),
        (60.0, True, True),
    ],
)
def test_out_of_time(deadline, stop, expected):
    absolute = None if deadline is None else time.monotonic() + deadline
    assert out_of_time(absolute, lambda: stop) is expected
