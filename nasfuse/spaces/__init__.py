"""Search spaces: which fusion sites a backbone has, their shapes, and the ops allowed there.

Example:
    >>> from nasfuse.spaces import load_space
    >>> space = load_space("resnet20")
    >>> space.sites["layer2.0"]
    Site(name='layer2.0', channels=32, num_inputs=2, height=16, width=16, ops=(...))
"""

from __future__ import annotations

from nasfuse.spaces._net import FusionNet
from nasfuse.spaces._schema import SpaceError
from nasfuse.spaces._space import SearchSpace, Site, SpaceMismatchError, list_spaces, load_space

__all__ = [
    "FusionNet",
    "SearchSpace",
    "Site",
    "SpaceError",
    "SpaceMismatchError",
    "list_spaces",
    "load_space",
]
