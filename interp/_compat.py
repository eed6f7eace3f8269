"""Thin shims around packages that do not install cleanly next to the CPU build of torch.

zennit imports ``torchvision`` when the package is imported, only to name two ResNet block classes for its
torchvision canonizers. The registry's torchvision is a CUDA build that fails to load with the CPU torch
("operator torchvision::nms does not exist"), so it is not installed. When no torchvision can be imported, a stub
module stands in whose two block classes nothing is an instance of, so those canonizers never match and every
other part of zennit works unchanged. A real, working torchvision is always preferred.

``make setup`` writes a ``.pth`` file that registers the fallback at interpreter start, so a plain
``import zennit`` works in the project's environment; :func:`import_zennit` does the same for other installs.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from pathlib import Path

_STUB_MODULES = ("torchvision", "torchvision.models", "torchvision.models.resnet")
PTH_NAME = "interp_torchvision_fallback.pth"


class _TorchvisionStubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Last resort on ``sys.meta_path``: consulted only for names no real finder provides."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        if fullname in _STUB_MODULES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=fullname != _STUB_MODULES[-1])
        return None

    def create_module(self, spec):  # noqa: D102
        return None

    def exec_module(self, module: types.ModuleType) -> None:  # noqa: D102
        module.__doc__ = "Stand-in for torchvision installed by interp._compat (torchvision is not usable here)."
        module.__version__ = "0+interp.stub"
        if module.__name__ == "torchvision.models.resnet":
            module.Bottleneck = type("Bottleneck", (), {})
            module.BasicBlock = type("BasicBlock", (), {})


def register_torchvision_fallback() -> None:
    """Append the stub finder to ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(f, _TorchvisionStubFinder) for f in sys.meta_path):
        sys.meta_path.append(_TorchvisionStubFinder())


def import_zennit() -> types.ModuleType:
    """Import zennit, falling back to the torchvision stub when torchvision is absent or broken."""
    try:
        import torchvision.models.resnet  # noqa: F401
    except Exception:  # absent, or the CUDA build failing to load its operators on the CPU torch
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionStubFinder)]
        sys.meta_path.insert(0, _TorchvisionStubFinder())  # ahead of a broken real torchvision
    import zennit

    return zennit


def install_pth(site_packages: str | None = None) -> Path:
    """Write the ``.pth`` file that registers the fallback whenever this environment's Python starts."""
    import sysconfig

    target = Path(site_packages or sysconfig.get_paths()["purelib"]) / PTH_NAME
    target.write_text("import interp._compat as _c; _c.register_torchvision_fallback()\n")
    return target


if __name__ == "__main__":
    if sys.argv[1:] == ["--install-pth"]:
        print(f"wrote {install_pth()}")
    else:
        raise SystemExit("usage: python -m interp._compat --install-pth")
