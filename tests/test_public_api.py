from __future__ import annotations

import subprocess
import sys

import pytest

import nasfuse


@pytest.mark.parametrize("name", nasfuse.__all__)
def test_every_public_name_resolves_to_its_module_object(name):
    value = getattr(nasfuse, name)
    module = nasfuse._WHERE.get(name)
    if module is not None:
        assert value is getattr(sys.modules[module], name)


def test_import_does_not_pull_in_ray_or_optuna():
    code = "import sys, nasfuse; print(sorted({'ray', 'optuna', 'tensorboard'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nasfuse.nope  # noqa: B018
