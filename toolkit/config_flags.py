"""Command-line options built from config dataclasses, so every setting has one name, one type and one default.

A field becomes ``--field-name`` (or ``metadata["flag"]``), typed from its annotation (int, float, str, bool,
``list[int]``: a repeatable flag), with ``metadata["choices"]`` when it has them. Its help is
``metadata["help"]``, else the comment on the field's line in the class source. ``metadata["cli"] = False``
keeps a field off the command line (values derived from the data, nested configs). Options are added with
``default=SUPPRESS``: only what the user typed reaches the namespace, so a value is taken from, in order, the
dataclass default, a config file (:func:`merge_config`), then the flags.

    parser = argparse.ArgumentParser()
    add_config_flags(parser, TrainConfig)
    add_config_flags(parser, ModelConfig, dest_prefix="model.")
    args = parser.parse_args([...])
    flags = {**given_flags(args, TrainConfig), "model": given_flags(args, ModelConfig, "model.")}
    cfg = build_config(TrainConfig, merge_config(file_values, flags))
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import textwrap
import tokenize
import typing
from functools import cache

from toolkit.errors import VeilError

METAVARS = {int: "N", float: "X", str: "TEXT"}

@cache
def field_comments(cls) -> dict[str, str]:
    """``{field: the comment at the end of the line that declares it}`` from the class source (empty where
    there is no source)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    first_on_line: dict[int, tuple[str, str]] = {}  # line -> (first token, second token)
    out = {}
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for i, tok in enumerate(tokens):
        line = tok.start[0]
        if tok.type == tokenize.NAME and line not in first_on_line and i + 1 < len(tokens):
            first_on_line[line] = (tok.string, tokens[i + 1].string)
        if tok.type == tokenize.COMMENT:
            name, after = first_on_line.get(line, ("", ""))
            if name in names and after == ":":
                out[name] = tok.string.lstrip("#").strip()
    return out


def flag_of(f: dataclasses.Field) -> str:
    return "--" + f.metadata.get("flag", f.name.replace("_", "-"))


def config_fields(cls) -> list[tuple[dataclasses.Field, object]]:
    """(field, resolved type) of every field of ``cls`` that may appear on the command line."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)
            if f.metadata.get("cli", True) and not dataclasses.is_dataclass(hints[f.name])]


def _default_of(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def add_config_flags(parser: argparse.ArgumentParser, cls, dest_prefix: str = "", title: str | None = None,
                     defaults: dict | None = None) -> None:
    """Add one option per command-line field of ``cls``; its value lands in ``args.<dest_prefix><field>``.
    ``defaults``: this command's own defaults for some fields (shown in the help; the command builds its
    config from them before the flags, ``build_config(cls, {**defaults, **given_flags(...)})``)."""
    group = parser.add_argument_group(title) if title else parser
    comments = field_comments(cls)
    defaults = defaults or {}
    for f, typ in config_fields(cls):
        help_text = f.metadata.get("help") or comments.get(f.name, "")
        default = defaults.get(f.name, _default_of(f))
        kwargs = {"dest": dest_prefix + f.name, "default": argparse.SUPPRESS}
        if f.metadata.get("choices"):
            kwargs["choices"] = list(f.metadata["choices"])
        if typ is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(typ) is list:
            (item,) = typing.get_args(typ)
            kwargs.update(type=item, action="append", metavar=f.metadata.get("metavar", METAVARS.get(item, "X")))
            help_text += " (repeatable)"
        elif "choices" not in kwargs:
            kwargs.update(type=typ, metavar=f.metadata.get("metavar", METAVARS.get(typ, typ.__name__.upper())))
        else:
            kwargs["type"] = typ
        if default not in (None, "", []):
            help_text += f" (default {default})"
        kwargs["help"] = help_text.replace("%", "%%").strip()
        group.add_argument(flag_of(f), **kwargs)


def given_flags(args: argparse.Namespace, cls, dest_prefix: str = "") -> dict:
    """The options of ``cls``'s fields (added with ``dest_prefix``) that the user typed: ``{field: value}``."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = vars(args)
    return {name: values[dest_prefix + name] for name in names if dest_prefix + name in values}


def merge_config(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` on top, nested dicts merged key by key."""
    out = dict(base)
    for k, v in overrides.items():
        out[k] = merge_config(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_config(cls, values: dict, where: str = "config"):
    """``cls(**values)`` with nested dataclasses built too; an unknown key or a value of the wrong type is a
    one-line VeilError naming ``where`` and the key."""
    if not isinstance(values, dict):
        raise VeilError(f"{where}: expected an object of {cls.__name__} fields")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise VeilError(f"{where}: unknown {cls.__name__} field(s) {', '.join(unknown)} "
                        f"(fields: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in values.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = value if isinstance(value, typ) else build_config(typ, value, f"{where} [{name}]")
        else:
            kwargs[name] = _coerce(value, typ, f"{where} [{name}]")
    return cls(**kwargs)


def _coerce(value, typ, where: str):
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = typing.get_origin(typ) or typ
    if expected is list:
        (item,) = typing.get_args(typ)
        if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            raise VeilError(f"{where}: expected a list of {item.__name__}, got {value!r}")
        return list(value)
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise VeilError(f"{where}: expected {getattr(expected, '__name__', expected)}, got {value!r}")
    return value
