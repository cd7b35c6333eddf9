"""Imports deferred until they are needed.

- :func:`lazy_exports`: ``nasfuse`` and ``nasfuse.search`` list their public names instead
  of importing every submodule (PEP 562 ``__getattr__``), so that importing one part (a Ray
  worker unpickling a trial's evaluator, the command line) does not pay for the others
  (Optuna, TensorBoard, the search driver).
- :func:`after_import`: ``nasfuse`` registers its timm models when timm is imported,
  before or after nasfuse, instead of importing timm (1.4 s, torchvision with it) itself.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["after_import", "lazy_exports"]


def lazy_exports(
    package: str, where: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module ``__getattr__`` and ``__dir__`` for names imported on first use.

    Args:
        package: the package's ``__name__``.
        where: public name -> the module that defines it.

    The first access imports the module and stores the name in the package, so later
    accesses are plain attribute reads.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace.get("__all__", where))

    return __getattr__, __dir__


def after_import(name: str, then: str) -> None:
    """Import module ``then`` as soon as top-level package ``name`` has been imported.

    At once if ``name`` already is; otherwise the first ``import name`` (from anywhere)
    runs the package, then imports ``then``, before it returns to the importer.
    """
    if name in sys.modules:
        importlib.import_module(then)
        return
    sys.meta_path.insert(0, _ImportThen(name, then))


class _ImportThen(importlib.abc.MetaPathFinder):
    """Finds nothing itself: asked for ``name``, it takes the spec the other finders give and
    makes its loader import ``then`` after running the package, then leaves ``sys.meta_path``.
    (A lookup that never imports, such as ``importlib.util.find_spec``, leaves it in place.)"""

    def __init__(self, name: str, then: str) -> None:
        self.name = name
        self.then = then
        self._looking = False

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name or self._looking:
            return None
        self._looking = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._looking = False
        if spec is None or spec.loader is None:
            return spec
        run_package = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            run_package(module)
            importlib.import_module(self.then)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
