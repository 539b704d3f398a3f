"""Backends by name, so the CLI, team files and the server can pick one from a string."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable

from rapo.types import Backend, RapoError


def _openai() -> Callable[..., Backend]:
    from rapo.backends.openai_compat import OpenAIBackend

    return OpenAIBackend


def _scripted() -> Callable[..., Backend]:
    from rapo.backends.scripted import ScriptedBackend

    return ScriptedBackend


def _sim() -> Callable[..., Backend]:
    try:
        module = importlib.import_module("rapo.backends.sim")
    except ModuleNotFoundError as exc:
        if exc.name != "rapo.backends.sim":
            raise
        raise RapoError(
            "the 'sim' backend is not available in this installation (rapo.backends.sim is "
            "missing); reinstall rapo or pick another backend"
        ) from None
    return module.SimBackend  # type: ignore[no-any-return]


# Factories import lazily: picking "scripted" must not pay for the openai SDK, nor sim for either.
_FACTORIES: dict[str, Callable[[], Callable[..., Backend]]] = {
    "openai": _openai,
    "openai-compatible": _openai,
    "scripted": _scripted,
    "sim": _sim,
}

BACKEND_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def make_backend(name: str, **options: Any) -> Backend:
    """Build the named backend; unknown names and options fail with the choices spelled out."""
    key = name.strip().lower().replace("_", "-")
    if key not in _FACTORIES:
        raise RapoError(f"unknown backend {name!r}; known backends: {', '.join(BACKEND_NAMES)}")
    cls = _FACTORIES[key]()
    _check_options(key, cls, options)
    return cls(**options)


def _check_options(name: str, cls: Callable[..., Any], options: dict[str, Any]) -> None:
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise RapoError(
            f"backend {name!r} does not take option(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted) or '(none)'}"
        )
