"""Loads the compiled extension ``inferlab._core``.

Developers can point ``INFERLAB_CORE_DIR`` at a CMake build folder (see
``scripts/dev_build.sh``) to use a freshly built extension with the sources in
``python/`` without reinstalling.
"""
import importlib.machinery
import importlib.util
import os
import sys


def _load():
    d = os.environ.get("INFERLAB_CORE_DIR")
    if d:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            p = os.path.join(d, "_core" + suffix)
            if os.path.exists(p):
                spec = importlib.util.spec_from_file_location("inferlab._core", p)
                mod = importlib.util.module_from_spec(spec)
                sys.modules["inferlab._core"] = mod
                spec.loader.exec_module(mod)
                return mod
        raise ImportError(f"INFERLAB_CORE_DIR={d!r} holds no _core extension")
    from . import _core  # noqa: F401  (the installed extension)

    return _core


core = _load()
