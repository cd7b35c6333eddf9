"""Progress bars: as usual on a terminal, rarely redrawn in a log file."""

from __future__ import annotations

import io
import time

from nasfuse.progress import LOG_INTERVAL_S, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _redraws(stream: io.StringIO, steps: int, seconds_per_step: float) -> int:
    for _ in progress_bar(range(steps), file=stream, desc="work"):
        time.sleep(seconds_per_step)
    return stream.getvalue().count("\r")


def test_a_log_file_gets_only_the_first_and_last_state_of_a_short_bar() -> None:
    log = io.StringIO()
    bar = progress_bar(range(3), file=log)
    assert bar.mininterval == LOG_INTERVAL_S
    bar.close()
    # 5 steps of 0.15 s: a log sees the bar drawn at the start and at the end only, a
    # terminal sees it redrawn after every step (tqdm's 0.1 s interval)
    assert _redraws(io.StringIO(), 5, 0.15) <= 3
    assert _redraws(_Terminal(), 5, 0.15) >= 5


def test_an_explicit_interval_wins() -> None:
    assert progress_bar(range(3), file=io.StringIO(), mininterval=2.0).mininterval == 2.0
