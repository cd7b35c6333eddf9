"""Progress bars that suit both a terminal and a log file.

On a terminal a tqdm bar redraws itself in place. In a log file (CI, ``nohup``, a cluster
job) every redraw is another line's worth of text, so there the bars redraw at most
every :data:`LOG_INTERVAL_S` seconds: a log keeps each bar's first and last state and a
line every half minute, instead of one per step.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["LOG_INTERVAL_S", "progress_bar"]

#: Seconds between redraws of a bar whose output is not a terminal.
LOG_INTERVAL_S = 30.0


def progress_bar(iterable: Iterable[Any] | None = None, **options: Any) -> Any:
    """``tqdm(iterable, **options)``, redrawn at most every 30 s when its stream is a file.

    The stream is ``options["file"]``, else stderr. Jupyter gets tqdm's notebook widget,
    redrawn as usual. An explicit ``mininterval`` wins.
    """
    from tqdm.auto import tqdm

    stream = options.get("file") or sys.stderr
    in_notebook = "notebook" in tqdm.__module__
    if not in_notebook and not (hasattr(stream, "isatty") and stream.isatty()):
        options.setdefault("mininterval", LOG_INTERVAL_S)
    return tqdm(iterable, **options)
