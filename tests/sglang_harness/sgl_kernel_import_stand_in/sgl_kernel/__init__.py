"""An import-only stand-in for SGLang's native ``sgl_kernel`` package: TEST HARNESS ONLY.

SGLang imports ``sgl_kernel`` (and submodules such as ``sgl_kernel.kvcacheio``) at module level,
but there is no CPU build of it on PyPI, and plain decoding on CPU with
``--attention-backend torch_native --sampling-backend pytorch`` calls none of its kernels.
This package satisfies the imports; every name it hands out is a callable that raises
NotImplementedError naming itself, so a code path that really needs a kernel fails loudly
instead of computing something wrong. It is put on the path of the SGLang test venv only
(``plugins/specforge-sglang/harness/build_venv.sh`` writes a ``.pth`` file for it) and is
never installed anywhere else: SGLang on CPU is a test harness here, not a deployment.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

__version__ = "0.0.0+import-only-stand-in"
IMPORT_ONLY_STAND_IN = True


class _MissingKernel:
    """Stands for one native kernel (or a namespace of them, e.g. ``scalar_types.uint4b8``)."""

    def __init__(self, qualname: str) -> None:
        self._qualname = qualname
        self.__name__ = self.__qualname__ = qualname.rsplit(".", 1)[-1]

    def __call__(self, *_args: Any, **_kwargs: Any) -> Any:
        raise NotImplementedError(
            f"{self._qualname} was called, but sgl_kernel here is an import-only stand-in of the SpecForge "
            f"SGLang test harness: this SGLang code path needs the real native kernels (a GPU, or a "
            f"CPU build of sgl-kernel on an AVX-512/AMX machine)"
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _MissingKernel(f"{self._qualname}.{name}")

    def __repr__(self) -> str:
        return f"<sgl_kernel import-only stand-in for {self._qualname}>"


class _StandInModule(types.ModuleType):
    """A submodule whose every public attribute is a missing kernel."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        value = _MissingKernel(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Creates ``sgl_kernel.<anything>`` submodules on import."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.startswith(__name__ + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    value = _MissingKernel(f"{__name__}.{name}")
    globals()[name] = value
    return value


if not any(isinstance(f, _StandInFinder) for f in sys.meta_path):
    sys.meta_path.append(_StandInFinder())
