"""Command-line options whose value is a config field: default and description come from the dataclass.

`config_option(SegmentConfig, "trim")` is a `typer.Option` whose help is the field's docstring (the
string literal under it in the class body, or `metadata={"help": ...}`) and whose shown default is the
field's default, so a default changed in the config changes `--help` too. The parameter itself
defaults to None: a value not given on the command line falls through to the workspace's nwt.toml and
then to the dataclass (`given()` drops the Nones before the config is built).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import textwrap
from collections.abc import Sequence
from typing import Any

import typer

from nwt_data.config import CropSpec, default_workers, format_size
from nwt_data.helptext import reflow

# A default made by a factory is shown by what it means, not by this machine's value.
FACTORY_TEXT = {default_workers: "CPU count"}
# Fields whose value is shown in a unit of their own.
SHOWN_AS = {"shard_size": format_size}


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's description: `metadata["help"]`, else the docstring under it in the class body."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body  # type: ignore[attr-defined]
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = reflow(after.value.value)
    for f in dataclasses.fields(cls):
        if "help" in f.metadata:
            docs[f.name] = reflow(f.metadata["help"])
    return docs


def field_help(cls: type, name: str) -> str:
    try:
        return field_docs(cls)[name]
    except KeyError:
        raise TypeError(f"{cls.__name__}.{name} has no docstring to show as its --help") from None


def default_value(cls: type, name: str) -> Any:
    """The field's default (a factory's product), or `dataclasses.MISSING` for a required field."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def shown_default(cls: type, name: str, decls: Sequence[str] = ()) -> str | None:
    """The default as `--help` shows it; None when there is none to show (required, empty, off)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default_factory in FACTORY_TEXT:
        return FACTORY_TEXT[f.default_factory]  # type: ignore[index]
    value = default_value(cls, name)
    if value is dataclasses.MISSING or value is None or value == "":
        return None
    if name in SHOWN_AS:
        return SHOWN_AS[name](value)
    if isinstance(value, bool):
        switch = next((d for d in decls if "/" in d), None)
        if switch is None:  # a one-sided flag shows nothing when off
            return None if not value else "yes"
        on, off = (side.strip().lstrip("-") for side in switch.split("/"))
        return on if value else off
    if isinstance(value, CropSpec):  # by its name where it has one
        return "paper" if value == CropSpec.parse("paper") else value.describe()
    if isinstance(value, (tuple, list)):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_option(cls: type, name: str, *decls: str, **kwargs: Any) -> Any:
    """A `typer.Option` for field `name` of config `cls`: its docstring as help, its default shown."""
    shown = shown_default(cls, name, decls)
    return typer.Option(*decls, help=field_help(cls, name), show_default=shown or False, **kwargs)


def given(**values: Any) -> dict[str, Any]:
    """The options that were given (not None): overrides of nwt.toml and the config's defaults."""
    return {key: value for key, value in values.items() if value is not None}
