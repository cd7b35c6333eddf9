"""Reading the study of a search that another process is running.

With a bare read-only SELECT, not ``optuna.load_study``: that creates every table it does
not find, and a driver creating its schema at the same moment failed with "table ...
already exists" (seen in CI). Read-only, the reader can neither create the file nor race
the driver's schema.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path


def trials_in_state(run_dir: Path, state: str) -> int:
    """Trials in ``state`` (``"COMPLETE"``, ``"RUNNING"``...) in ``run_dir``'s study so far."""
    database = run_dir / "study.db"
    if not database.is_file():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            query = "SELECT count(*) FROM trials WHERE state = ?"
            (count,) = db.execute(query, (state,)).fetchone()
    except sqlite3.Error:  # no tables yet, or locked by the writer
        return 0
    return int(count)
