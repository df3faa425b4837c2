"""Help that reads well at 80 columns, for both CLIs (`nwt-data`, `nwt-train`).

Docstrings are written wrapped at 110 columns; Typer keeps those line breaks, so at 80 columns every
long line breaks twice. `tidy(app)` joins the lines of each paragraph and lets Rich wrap them to the
terminal. Typer labels option types `<bool>`, `<path>`, `<list[str]>`, `<int range>`; `type_label` turns them
into the usual `PATH` / `TEXT` / `INTEGER` labels, lists choices as `[a|b]` and drops the label of
flags; a default given as text is shown as it is, not in parentheses.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import typer

_LABELS = {"path": "PATH", "str": "TEXT", "int": "INTEGER", "float": "NUMBER", "datetime": "TIME"}


def plain(text: str) -> str:
    """Rich markup out: `[bold]Example:[/]` -> `Example:`, `\\[model]` -> `[model]`."""
    text = re.sub(r"(?<!\\)\[(?:bold|/|dim|italic|red|green|yellow)[^\]]*\]", "", text)
    return text.replace("\\[", "[")


def reflow(text: str) -> str:
    """Join each paragraph's lines into one (paragraphs stay separated by blank lines); no markup."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(plain(text)))
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def type_label(label: str | None, *, is_flag: bool) -> str | None:
    """Typer's `<type>` label as shown in help: None for flags, choices as [a|b], PATH, TEXT ..."""
    if is_flag or not label:
        return None
    inner = label.strip("<>").removesuffix(" range")  # the range itself is shown as [x>=1]
    if inner.startswith("list[") and inner.endswith("]"):
        inner = inner[5:-1]
    if "|" in inner:
        return f"[{inner}]"
    return _LABELS.get(inner, inner.upper())


def _patch_type_labels() -> None:
    from typer.core import TyperArgument, TyperOption

    if getattr(TyperOption.display_type_rich, "_nwt", False):
        return
    for kind in (TyperOption, TyperArgument):
        original = kind.display_type_rich

        def display_type_rich(self: Any, ctx: Any, original: Any = original) -> str | None:
            if self.metavar is not None:
                return original(self, ctx)
            return type_label(original(self, ctx), is_flag=bool(getattr(self, "is_flag", False)))

        display_type_rich._nwt = True  # type: ignore[attr-defined]
        kind.display_type_rich = display_type_rich  # type: ignore[method-assign]
    help_record = TyperOption.get_help_record

    def get_help_record(self: Any, ctx: Any) -> Any:
        if isinstance(self.help, str):
            self.help = plain(self.help)  # option help is written for Rich: `\\[default: 4]`
        return help_record(self, ctx)

    TyperOption.get_help_record = get_help_record  # type: ignore[method-assign]
    default_string = TyperOption._get_default_string

    def _get_default_string(self: Any, *, ctx: Any, show_default_is_str: bool, default_value: Any) -> str:
        if show_default_is_str:  # a default given as text (`CPU count`) is shown as it is, unbracketed
            return str(self.show_default)
        return default_string(self, ctx=ctx, show_default_is_str=False, default_value=default_value)

    TyperOption._get_default_string = _get_default_string  # type: ignore[method-assign]
    # Usage lines name a required argument in capitals (`fetch [OPTIONS] MANIFEST`), not `{manifest}`.
    TyperArgument._usage_display_name = lambda self: (
        (  # type: ignore[method-assign]
            self.display_name_raw.upper() if self.required else f"[{self.display_name_raw.upper()}]"
        )
        + ("..." if self.nargs != 1 else "")
    )


def tidy(app: typer.Typer) -> typer.Typer:
    """Plain, reflowed help for `app` and each of its commands and options. Returns `app`.

    Click's plain formatter wraps paragraphs to the terminal and keeps each option on a line of its
    own; Typer's Rich panels squeeze an 80-column terminal into four narrow columns.
    """
    _patch_type_labels()
    app.rich_markup_mode = None  # type: ignore[assignment]
    if app.info.help:
        app.info.help = reflow(str(app.info.help))
    for command in app.registered_commands:
        doc = command.help or (inspect.getdoc(command.callback) if command.callback else None)
        if doc:
            command.help = reflow(doc)
    return app
