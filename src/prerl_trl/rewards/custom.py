"""Reward functions named on the command line: a built-in name, a dotted import path (`my_lib.rewards.my_reward`), or
a Python file and a function in it (`./my_rewards.py:my_reward`). Every mistake is one line that names the fix."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any


def load_reward_functions(names: list[str], registry: dict[str, Callable[..., Any]]) -> list[Callable[..., Any]]:
    """The reward functions of `--reward_funcs`: `registry` names first, then dotted paths and file paths."""
    return [registry[name] if name in registry else _load(name, registry) for name in names]


def _load(name: str, registry: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    if ":" in name:
        path, attr = name.rsplit(":", 1)
        return _from_file(name, path, attr)
    if name.endswith(".py") or os.path.sep in name:
        return _from_file(name, name, "")
    if "." not in name:
        raise ValueError(
            f"reward_funcs: {name!r} is unknown. Use {', '.join(registry)}, a dotted import path "
            "(my_module.my_reward), or a file and a function in it (./my_rewards.py:my_reward)."
        )
    module_name, attr = name.rsplit(".", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ValueError(
            f"reward_funcs: {name!r}: no module {error.name!r} (from {os.getcwd()}). Name an importable module and "
            "its function (my_module.my_reward), or a file: ./my_rewards.py:my_reward."
        ) from None
    return _function(name, module, attr)


def _from_file(name: str, path: str, attr: str) -> Callable[..., Any]:
    if not os.path.isfile(path):
        raise ValueError(f"reward_funcs: {name!r}: no file {path!r} (from {os.getcwd()}); check the path.")
    if not attr:
        raise ValueError(
            f"reward_funcs: {name!r}: name the function in the file, as {path}:<function> (its functions: "
            f"{_functions(_import_file(path))})."
        )
    return _function(name, _import_file(path), attr, where=path)


def _import_file(path: str) -> Any:
    # One module per file: two different files with the same name are two modules.
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]
    module_name = "prerl_reward_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_") + "_" + digest
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, os.path.abspath(path))
    if spec is None or spec.loader is None:
        raise ValueError(f"reward_funcs: {path!r} is not a Python file; name a .py file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before running it: dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


def _function(name: str, module: Any, attr: str, where: str | None = None) -> Callable[..., Any]:
    func = getattr(module, attr, None)
    if not callable(func):
        what = "has no function" if func is None else "has a non-callable"
        raise ValueError(
            f"reward_funcs: {name!r}: {where or module.__name__} {what} {attr!r} (its functions: "
            f"{_functions(module)})."
        )
    return func


def _functions(module: Any) -> str:
    names = [n for n, f in vars(module).items() if inspect.isfunction(f) and not n.startswith("_")
             and getattr(f, "__module__", None) == module.__name__]
    return ", ".join(names) or "none"
