"""``vrsearch methods [NAME]``: the registered methods and their knobs, as rich tables."""

from __future__ import annotations

import json
import types
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import typer

from vrsearch.cli.base import app, console, user_errors

if TYPE_CHECKING:  # annotations only: the commands import the methods when they run
    from vrsearch.registry import MethodSpec


@app.command()
def methods(
    name: Annotated[str | None, typer.Argument(help="One method (default: every registered method).")] = None,
) -> None:
    """List registered methods: for each knob its default, type and description (paper symbol, equation)."""
    from vrsearch.methods import all_methods, get_method

    with user_errors():
        specs = all_methods() if name is None else [get_method(name)]
    out = console()
    for spec in specs:
        for part in method_renderables(spec):
            out.print(part)


def method_renderables(spec: MethodSpec) -> list[Any]:
    """A method's heading lines (name, data needs, summary, citation) and its knob table."""
    from rich.table import Table
    from rich.text import Text

    flag = "  [needs unlabeled data]" if spec.data_needs().unlabeled else ""
    head = Text(f"{spec.name}{flag}", style="bold")
    lines = [Text(f"    {line}") for line in (spec.summary, f"cite: {spec.citation}" if spec.citation else "") if line]
    table = Table(box=None, pad_edge=False, padding=(0, 1))
    for column in ("knob", "default", "type", "description"):
        table.add_column(column, overflow="fold")
    for knob, default in spec.knobs().items():
        field = spec.params.model_fields[knob]
        table.add_row(
            Text(knob),
            Text(json.dumps(default, ensure_ascii=False)),
            Text(type_name(field.annotation)),
            Text(field.description or ""),
        )
    return [head, *lines, table, Text("")]


def type_name(annotation: Any) -> str:
    """A knob's type as a study author writes it: ``float``, ``one of a|b``, ``int or null``."""
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + "|".join(str(a) for a in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in get_args(annotation))
    if origin is Annotated:
        return type_name(get_args(annotation)[0])
    if origin is list:
        return f"list of {type_name(get_args(annotation)[0])}" if get_args(annotation) else "list"
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "")
