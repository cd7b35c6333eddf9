"""Search spaces: which fusion sites a backbone has, their shapes, and the ops allowed there.

Example:
    >>> from nasfuse.spaces import load_space
    >>> space = load_space("resnet20")
    >>> space.sites["layer2.0"]
    Site(name='layer2.0', channels=32, num_inputs=2, height=16, width=16, ops=(...))
"""

from __future__ import annotations

# The shipped families register themselves when imported: importing them here is what
# makes them known (a family of your own: import its module before loading its spaces).
from nasfuse.spaces import hrnet, resnet  # noqa: F401
from nasfuse.spaces._family import (
    Family,
    SpaceFamily,
    budget_space_options,
    get_family,
    list_families,
    register_family,
    registered_at,
    unregister_family,
)
from nasfuse.spaces._loading import list_spaces, load_recorded_space, load_space
from nasfuse.spaces._net import FusionNet
from nasfuse.spaces._schema import SpaceError
from nasfuse.spaces._site import Site
from nasfuse.spaces._space import SearchSpace, SpaceMismatchError

__all__ = [
    "Family",
    "FusionNet",
    "SearchSpace",
    "Site",
    "SpaceError",
    "SpaceFamily",
    "SpaceMismatchError",
    "budget_space_options",
    "get_family",
    "list_families",
    "list_spaces",
    "load_recorded_space",
    "load_space",
    "register_family",
    "registered_at",
    "unregister_family",
]
