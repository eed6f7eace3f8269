"""Command-line flags generated from frozen dataclasses, so that flags, help and defaults cannot drift apart.

Each field becomes ``--field-name`` with the field's docstring (the string literal under it) as its help and the
dataclass's default; its annotation gives the type (``int``, ``float``, ``str``, ``bool`` as ``--x/--no-x``,
``str | None`` or ``int | None``, a ``tuple`` of ints or strings as a comma-separated list).
``field(metadata=...)`` may add:

- ``flags``: the spellings, e.g. ``("--output", "--seed-output")`` (the first is the name; the others are aliases);
- ``choices``: the allowed values;
- ``key_values``: a ``dict`` field given as repeatable ``KEY=VALUE`` items (values parsed as JSON), e.g.
  ``--agent-option mem_len=40``;
- ``cli: False``: no flag for this field.

Parsed values that are None (a flag not given) are left out of :func:`values`, so the dataclass's defaults (or
another source, such as a saved configuration) fill them.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from functools import cache

from interp.errors import UserError


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under the field in the class body (and its bases'), whitespace folded."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for node, following in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _base_type(annotation) -> tuple[type, bool]:
    """``(type, optional)`` of an annotation such as ``int``, ``str | None`` or ``tuple[int, ...]``."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing), {"types": types})  # noqa: S307 (our own annotations)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(members[0])[0], True
    return (origin or annotation), False


def key_values(items: list[str] | None) -> dict:
    """``["mem_len=40", "gating=false"]`` -> ``{"mem_len": 40, "gating": False}`` (values parsed as JSON)."""
    parsed = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"expected KEY=VALUE, got {item!r}")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def _sequence(kind: type):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(item) for item in text.split(",") if item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}") from None
    return parse


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                  exclude: tuple[str, ...] = (), required: tuple[str, ...] = ()) -> None:
    """A flag for every field of the dataclass ``cls`` (see the module docstring); its parsed value is None when the
    flag is not given, except for the fields in ``required``."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in exclude or not field.metadata.get("cli", True):
            continue
        flags = _flags(field)
        default = (field.default if field.default is not dataclasses.MISSING  # a factory: this machine's value
                   else field.default_factory() if field.default_factory is not dataclasses.MISSING else None)
        kind, optional = _base_type(hints[field.name])
        help_text = docs.get(field.name, "")
        options: dict = {"dest": field.name, "default": None}
        if field.metadata.get("key_values"):
            options.update(action="append", metavar="KEY=VALUE")
            help_text += " (repeatable)"
        elif kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif kind is tuple:
            item = typing.get_args(hints[field.name])[0]
            options.update(type=_sequence(item), metavar=f"{item.__name__.upper()},...")
            default = ",".join(map(str, default)) if default is not None else None
        else:
            options["type"] = kind
        if "choices" in field.metadata:
            options["choices"] = field.metadata["choices"]
        if field.name in required:
            options["required"] = True
        elif default is not None and (default not in ("", {}, ()) or kind in (int, float)):
            help_text += f" (default: {default})"
        elif optional:
            help_text += " (default: none)"
        parser.add_argument(*flags, help=help_text.replace("%", "%%"), **options)


def _flags(field: dataclasses.Field) -> tuple[str, ...]:
    """A field's flags: its ``flags`` metadata, or ``--name`` with dashes."""
    return field.metadata.get("flags", (f"--{field.name.replace('_', '-')}",))


def flag_name(cls: type, name: str) -> str:
    """The command-line flag of field ``name`` of ``cls``, e.g. ``--agent-option`` for ``agent``."""
    return _flags(next(f for f in dataclasses.fields(cls) if f.name == name))[0]


def values(cls: type, namespace: argparse.Namespace) -> dict:
    """The fields of ``cls`` given on the command line (``key_values`` fields parsed into dicts)."""
    given = {}
    for field in dataclasses.fields(cls):
        if not field.metadata.get("cli", True):
            continue
        value = getattr(namespace, field.name, None)
        if value is None:
            continue
        given[field.name] = key_values(value) if field.metadata.get("key_values") else value
    return given


def build(cls: type, namespace: argparse.Namespace, **overrides):
    """An instance of ``cls`` from the command line, its defaults for the flags not given."""
    return cls(**{**values(cls, namespace), **overrides})
