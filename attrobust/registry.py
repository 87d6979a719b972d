"""Name -> component registries, and building a component from its YAML with every key and type checked.

A component is one file that registers a class (usually a small frozen dataclass) or a builder function under the
name of its YAML file in `conf/<group>/`. `Registry.build(cfg)` takes the YAML mapping (`name` plus fields) and
checks it against the signature and its annotations, so a key the code does not know, a value of the wrong type or
one the component rejects is one clear error, not a silent default or a traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from attrobust.errors import AttrobustError, choices

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of builders for one kind of component (dataset, model, reg, attack, optim)."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._builders: dict[str, Callable[..., T]] = {}
        self._declared: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **declared: Any) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Register a builder under `name`, with what it declares about what it builds (`declared`, e.g. a model's
        `cam_layer`), read back with `declared(name)`."""
        def decorator(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._builders:
                raise ValueError(f"{self.group} '{name}' is registered twice")
            if inspect.isclass(builder) and hasattr(builder, "registry_name"):
                builder.registry_name = name  # a component states its name once, here
            self._builders[name] = builder
            self._declared[name] = dict(declared)
            return builder

        return decorator

    def declared(self, name: str) -> dict[str, Any]:
        """What the builder `name` declared when it was registered."""
        self.get(name)
        return dict(self._declared[name])

    def names(self) -> list[str]:
        return sorted(self._builders)

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._builders:
            raise AttrobustError(f"unknown {self.group} '{name}'; choose one of: {choices(self._builders)}")
        return self._builders[name]

    def build(self, cfg: Mapping[str, Any], key: str | None = None, **context: Any) -> T:
        """Build the component named `cfg['name']` from the other keys of `cfg` plus `context` (e.g. num_classes);
        errors name its settings as `key.FIELD` (default: the group, `reg.weight`)."""
        if "name" not in cfg:
            raise AttrobustError(f"the {self.group} config has no 'name'; choose one of: {choices(self._builders)}")
        name = str(cfg["name"])
        kwargs = {field: value for field, value in cfg.items() if field != "name"}
        return construct(self.get(name), kwargs, f"{self.group} '{name}'", key or self.group, context)


def construct(builder: Callable[..., T], values: Mapping[str, Any], where: str, prefix: str,
              context: Mapping[str, Any] | None = None) -> T:
    """Call `builder(**values, **context)` after checking keys and types; errors name `prefix.key`."""
    context = dict(context or {})
    params = inspect.signature(builder).parameters
    unknown = sorted(set(values) - (set(params) - set(context)))  # what the caller supplies is not a setting
    if unknown:
        valid = [p for p in params if p not in context]
        raise AttrobustError(f"unknown key(s) {', '.join(unknown)} for {where}; valid keys: {choices(valid)}")
    missing = [p for p, spec in params.items()
               if spec.default is inspect.Parameter.empty and p not in values and p not in context]
    if missing:
        raise AttrobustError(f"{where} needs {', '.join(missing)}; set {prefix}.{missing[0]}=...")
    hints = typing.get_type_hints(builder)  # for a class: its fields' annotations across the MRO
    kwargs = {key: _checked(value, hints.get(key), f"{prefix}.{key}" if prefix else key)
              for key, value in values.items()}
    try:
        return builder(**kwargs, **{k: v for k, v in context.items() if k in params})
    except ValueError as error:  # components validate their values in __post_init__ / __init__
        raise AttrobustError(f"{where}: {error}") from error


def _checked(value: Any, hint: Any, key: str) -> Any:
    """`value` converted to what `hint` asks for (nested dataclass, tuple), or one clear type error."""
    if hint is None or hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _checked(value, inner[0], key) if len(inner) == 1 else value
    if origin is typing.Literal:
        if value not in args:
            raise AttrobustError(f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (tuple, Sequence) or hint in (tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            raise AttrobustError(f"{key} must be a list, got {value!r}")
        item = args[0] if args and (len(args) == 1 or args[-1] is Ellipsis) else None
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise AttrobustError(f"{key} must have {len(args)} entries, got {value!r}")
        hints = args if origin is tuple and args and args[-1] is not Ellipsis else [item] * len(value)
        return tuple(_checked(v, h, f"{key}[{i}]") for i, (v, h) in enumerate(zip(value, hints, strict=True)))
    if inspect.isclass(hint) and dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise AttrobustError(f"{key} must be a mapping, got {value!r}")
        return construct(hint, value, f"'{key}'", key)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AttrobustError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(value):  # no setting of any component means anything at NaN or infinity
            raise AttrobustError(f"{key} must be a finite number, got {value}")
        return float(value)
    if hint in (int, bool, str) and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise AttrobustError(f"{key} must be {'an' if hint is int else 'a'} {hint.__name__}, got {value!r}")
    return value


def import_components(package: str, path: Sequence[str], skip: tuple[str, ...] = ("base",)) -> None:
    """Import every module of `package` (its `__path__`) except `skip`: a component registers itself when its one
    file is imported, so adding a component never means editing a list of imports."""
    import importlib
    import pkgutil

    for module in sorted(info.name for info in pkgutil.iter_modules(path)):
        if module not in skip:
            importlib.import_module(f"{package}.{module}")


def build_listed(registry: Registry[T], entries: Any, key: str, example: str, allow_empty: bool = False) -> list[T]:
    """The components of a config list of names or mappings (`[kendall, {name: lens_recall, window: 5}]`), each
    built by `registry`; one line naming `key` for a value that is not such a list, an empty list (unless
    `allow_empty`), or two entries with the same `column`."""
    if isinstance(entries, (str, Mapping)) or not isinstance(entries, Sequence):
        raise AttrobustError(f"{key} must be a list such as {example}, got {entries!r}")
    if not entries and not allow_empty:
        raise AttrobustError(f"{key} is empty; choose some of: {', '.join(registry.names())}")
    built = []
    for entry in entries:
        if not isinstance(entry, (str, Mapping)):
            raise AttrobustError(f"{key} entries are {registry.group} names or {{name: ..., setting: ...}}, "
                                 f"got {entry!r}")
        built.append(registry.build({"name": entry} if isinstance(entry, str) else entry))
    columns = [component.column for component in built]  # type: ignore[attr-defined]
    twice = sorted({column for column in columns if columns.count(column) > 1})
    if twice:
        raise AttrobustError(f"{key} lists {', '.join(twice)} more than once")
    return built
