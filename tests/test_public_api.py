from __future__ import annotations

import subprocess
import sys

import pytest

import nasfuse
import nasfuse.search


def _public_names() -> list[tuple[object, str]]:
    return [(package, name) for package in (nasfuse, nasfuse.search) for name in package.__all__]


@pytest.mark.parametrize(("package", "name"), _public_names())
def test_every_public_name_resolves_to_its_module_object(package, name):
    value = getattr(package, name)
    module = package._WHERE.get(name)
    if module is not None:
        assert value is getattr(sys.modules[module], name)


def _fresh(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_does_not_pull_in_ray_optuna_tensorboard_or_timm():
    heavy = "{'ray', 'optuna', 'tensorboard', 'timm', 'torchvision'}"
    assert _fresh(f"import sys, nasfuse; print(sorted({heavy} & set(sys.modules)))") == "[]"


def test_a_ray_worker_scoring_a_trial_imports_neither_the_driver_nor_timm():
    code = (
        "import sys\n"
        "import nasfuse.search._supernet_eval, nasfuse.search._trial\n"
        "from nasfuse.training import evaluate_arch\n"
        "print(sorted({'optuna', 'tensorboard', 'timm', 'nasfuse.search._driver'}"
        " & set(sys.modules)))"
    )
    assert _fresh(code) == "[]"


@pytest.mark.parametrize(
    "imports",
    [
        "import nasfuse, timm",
        "import timm, nasfuse",
        # A lookup that does not import (libraries probe for timm so) must not use up the hook.
        "import nasfuse, importlib.util; importlib.util.find_spec('timm'); import timm.models",
        "import nasfuse.training; import timm",
    ],
)
def test_timm_knows_the_nasfuse_models_whichever_is_imported_first(imports):
    listed = _fresh(f"{imports}\nimport timm\nprint(sorted(timm.list_models('nasfuse_*')))")
    expected = sorted(f"nasfuse_{name}" for name in nasfuse.list_spaces())
    assert listed == str(expected)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nasfuse.nope  # noqa: B018
    with pytest.raises(AttributeError, match="'nasfuse.search' has no attribute 'nope'"):
        nasfuse.search.nope  # noqa: B018
