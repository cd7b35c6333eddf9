"""The tiny search spaces under ``tests/fixtures``, named once for the modules that load them.

As strings: a config's ``space`` key and the command line name a space by a string.
"""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
TINY_HRNET = str(FIXTURES / "tiny_hrnet.yaml")
TINY_RESNET = str(FIXTURES / "tiny_resnet.yaml")
