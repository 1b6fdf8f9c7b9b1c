"""Configuration: one frozen dataclass per component, YAML recipes and typed ``--set a.b=c`` overrides.

Every stage defines its own frozen dataclass (fields carry a one-line ``#`` comment each) and nests the
component dataclasses it needs. :func:`load_config` builds an instance from a YAML file plus overrides,
checking every key and type; unknown keys and bad values raise :class:`ConfigError` naming the key and
what is allowed. :func:`save_config` writes the resolved configuration into a run directory.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from lexray.errors import LexrayError

T = TypeVar("T")

CONFIG_FILENAME = "config.yaml"


class ConfigError(LexrayError, ValueError):
    """A configuration key is unknown or its value has the wrong type."""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type ``tp`` and convert YAML/CLI spellings (e.g. lists to tuples)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}: expected one of {_type_name(tp)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, prefix=f"{key}.")
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(
                _coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "2e-5" (no dot) as a string; accept any spelling float() accepts.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        return Path(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _build(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]!s} in {cls.__name__}; allowed keys: {', '.join(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field without a default
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=c`` into a key path and a YAML-parsed value (``3`` -> int, ``[1,2]`` -> list)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError):  # not YAML: the text itself is the value
        value = raw
    return path, value


def _apply_override(cls: type, data: dict[str, Any], path: list[str], value: Any, full: str) -> None:
    hints = get_type_hints(cls)
    head, rest = path[0], path[1:]
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    if head not in names:
        raise ConfigError(f"unknown key {full} in {cls.__name__}; allowed keys: {', '.join(names)}")
    if not rest:
        data[head] = value
        return
    sub_tp = hints[head]
    sub_cls = next(
        (a for a in (get_args(sub_tp) or (sub_tp,)) if dataclasses.is_dataclass(a)),
        None,
    )
    if sub_cls is None:
        raise ConfigError(f"{full}: {head} is a {_type_name(sub_tp)}, not a section with keys")
    if get_origin(sub_tp) in (tuple, list):
        _apply_to_entries(sub_cls, data, head, rest, value, full)
        return
    sub = data.get(head)
    if sub is None:
        sub = {}
    elif dataclasses.is_dataclass(sub):
        sub = to_dict(sub)
    elif not isinstance(sub, Mapping):
        raise ConfigError(f"{full}: {head} must be a mapping of {sub_cls.__name__} fields, got {sub!r}")
    data[head] = dict(sub)
    _apply_override(sub_cls, data[head], rest, value, full)


def _apply_to_entries(
    cls: type, data: dict[str, Any], head: str, rest: list[str], value: Any, full: str
) -> None:
    """``head.N.key=v`` sets entry N of a list of sections; ``head.key=v`` sets every entry."""
    entries = data.get(head) or []
    if isinstance(entries, (Mapping, str)) or not isinstance(entries, Sequence):
        raise ConfigError(f"{full}: {head} must be a list of {cls.__name__} entries, got {entries!r}")
    entries = [to_dict(e) if dataclasses.is_dataclass(e) else e for e in entries]
    if rest[0].isdigit():
        index, rest = int(rest[0]), rest[1:]
        if index >= len(entries):
            raise ConfigError(f"{full}: {head} has {len(entries)} entries (numbered from 0)")
        chosen = [index]
    else:
        chosen = list(range(len(entries)))
    if not chosen:
        raise ConfigError(f"{full}: {head} has no entry to set; add one first (e.g. {head}=PATH)")
    if not rest:
        raise ConfigError(f"{full}: name a key of the {cls.__name__} entry, e.g. {head}.0.path=...")
    for i in chosen:
        if not isinstance(entries[i], Mapping):
            raise ConfigError(f"{full}: {head}[{i}] must be a mapping of {cls.__name__} fields")
        entries[i] = dict(entries[i])
        _apply_override(cls, entries[i], rest, value, full)
    data[head] = entries


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> T:
    """Build a ``cls`` instance from an optional YAML file, a base mapping and ``a.b=c`` overrides.

    Args:
        cls: the frozen dataclass of the component or run.
        path: a YAML recipe; its top-level keys are ``cls``'s fields.
        overrides: ``key.path=value`` strings applied after the file (values parsed as YAML); for a
            list of sections, ``key.N.field=v`` sets entry N and ``key.field=v`` every entry.
        base: values applied before the file (e.g. programmatic defaults).

    Raises:
        ConfigError: the file is absent or not YAML, an unknown key (naming the allowed ones), or a
            value of the wrong type.
    """
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"config file {p} is a folder: give a YAML file")
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        loaded = _read_yaml(p)
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{p}: the top level must be a mapping of {cls.__name__} fields")
        data = _deep_merge(data, loaded)
    for text in overrides:
        keys, value = parse_override(text)
        _apply_override(cls, data, keys, value, ".".join(keys))
    return _build(cls, data)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the recipe as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror})") from exc
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where} ({problem}); fix the recipe") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: nested too deeply to be a recipe") from exc


def _deep_merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def to_dict(config: Any) -> Any:
    """Plain YAML-able data (dicts, lists, strings, numbers) from a config dataclass."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, Mapping):
        return {str(k): to_dict(v) for k, v in config.items()}
    if isinstance(config, Path):
        return str(config)
    return config


def save_config(config: Any, run_dir: str | Path, filename: str = CONFIG_FILENAME) -> Path:
    """Write the resolved ``config`` as YAML into ``run_dir`` (created if needed); returns the file."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / filename
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(config), sort_keys=False), encoding="utf-8")
    tmp.replace(out)
    return out


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(field, type, default) rows for a config dataclass, for help texts and docs."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        rows.append((f.name, _type_name(hints[f.name]), default))
    return rows
