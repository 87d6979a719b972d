"""Name -> component registries.

A component is one file that registers a class (usually a small frozen dataclass) or a builder function under the
name of its YAML file in `conf/<group>/`. `Registry.build(cfg)` takes the YAML mapping (`name` plus fields) and
checks it against the signature, so a key the code does not know is one clear error, not a silent default.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from attrobust.errors import AttrobustError, choices

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of builders for one kind of component (dataset, model, reg, attack, optim)."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._builders: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._builders:
                raise ValueError(f"{self.group} '{name}' is registered twice")
            self._builders[name] = builder
            return builder

        return decorator

    def names(self) -> list[str]:
        return sorted(self._builders)

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._builders:
            raise AttrobustError(f"unknown {self.group} '{name}'; choose one of: {choices(self._builders)}")
        return self._builders[name]

    def build(self, cfg: Mapping[str, Any], **context: Any) -> T:
        """Build the component named `cfg['name']` from the other keys of `cfg` plus `context` (e.g. num_classes)."""
        if "name" not in cfg:
            raise AttrobustError(f"the {self.group} config has no 'name'; choose one of: {choices(self._builders)}")
        name = str(cfg["name"])
        builder = self.get(name)
        kwargs = {key: value for key, value in cfg.items() if key != "name"}
        params = inspect.signature(builder).parameters
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            valid = [p for p in params if p not in context]
            raise AttrobustError(
                f"unknown key(s) {', '.join(unknown)} for {self.group} '{name}'; valid keys: {choices(valid)}"
            )
        missing = [p for p, spec in params.items()
                   if spec.default is inspect.Parameter.empty and p not in kwargs and p not in context]
        if missing:
            raise AttrobustError(f"{self.group} '{name}' needs {', '.join(missing)}; set {self.group}.{missing[0]}=...")
        kwargs = _coerce_nested(builder, kwargs)
        try:
            return builder(**kwargs, **{k: v for k, v in context.items() if k in params})
        except ValueError as error:  # components validate their values in __post_init__ / __init__
            raise AttrobustError(f"{self.group} '{name}': {error}") from error


def _coerce_nested(builder: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Turn nested mappings into the dataclasses a field is annotated with, and lists into tuples."""
    try:
        hints = typing.get_type_hints(builder.__init__ if inspect.isclass(builder) else builder)
    except (NameError, TypeError):
        hints = {}
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        hint = hints.get(key)
        if isinstance(value, Mapping) and inspect.isclass(hint) and dataclasses.is_dataclass(hint):
            fields = {f.name for f in dataclasses.fields(hint)}
            unknown = sorted(set(value) - fields)
            if unknown:
                raise AttrobustError(f"unknown key(s) {', '.join(unknown)} under '{key}'; valid keys: {choices(fields)}")
            value = hint(**value)
        elif isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out
