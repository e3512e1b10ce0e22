"""This checkout's code in a child process (the CLI, ``scrapy crawl``, a script run from another folder), not the
copy installed in the virtualenv, and its tools as modules."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]


def checkout_env(**extra: str) -> dict[str, str]:
    """This process's environment with the checkout first on ``PYTHONPATH``, and ``extra`` variables."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), **extra}


def load_tool(name: str) -> ModuleType:
    """The script ``tools/<name>.py`` as a module (``tools/`` is not a package), registered under ``name``:
    dataclasses and typing look a class's module up by name while they build it."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tools" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
