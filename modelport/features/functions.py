"""Turning a plain Python function into a feature function's definition (what
``FeatureEngineeringClient.create_function`` registers).

The definition must run on its own in another process, so the function is taken apart here:

- its source comes from :func:`inspect.getsource` (so it must live in a file, not be typed at a
  prompt) and is dedented; a lambda, a decorated function, a method or a generator is refused;
- the modules it reads as globals (``math`` in ``math.log(x)``) become ``import`` lines above
  it; any other global or a variable of an enclosing function is refused, naming it, as it would
  not exist where the function runs;
- every parameter and the result need an annotation among ``int``, ``float``, ``str`` and
  ``bool`` (``X | None`` too), which become Spark's ``bigint``, ``double``, ``string`` and
  ``boolean``.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
import types
import typing
from collections.abc import Callable
from typing import Any

from modelport.errors import InvalidParameterValue
from modelport.tables.feature_functions import FunctionDef, function_name

__all__ = ["SPARK_TYPES", "definition_of"]

#: Python annotation -> the Spark SQL type of a feature function's parameter or result.
SPARK_TYPES: dict[Any, str] = {int: "bigint", float: "double", str: "string", bool: "boolean"}


def _spark_type(annotation: Any, what: str, fn: str) -> str:
    if annotation is inspect.Parameter.empty:
        raise InvalidParameterValue(
            f"{what} of {fn} has no type annotation: annotate it with int, float, str or bool."
        )
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            annotation = rest[0]
    kind = SPARK_TYPES.get(annotation)
    if kind is None:
        raise InvalidParameterValue(
            f"{what} of {fn} is annotated {annotation!r}; a feature function takes and returns int, "
            "float, str or bool."
        )
    return kind


def _source(func: Callable[..., Any], fn: str) -> str:
    try:
        text = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        raise InvalidParameterValue(
            f"The source of {fn} cannot be read: define it in a file (a module or a notebook cell)."
        ) from None
    try:
        node = ast.parse(text).body[0]
    except (SyntaxError, IndexError):
        raise InvalidParameterValue(f"The source of {fn} cannot be parsed on its own.") from None
    if not isinstance(node, ast.FunctionDef) or node.name != func.__name__:
        raise InvalidParameterValue(f"The source of {fn} is not a plain 'def' statement.")
    if node.decorator_list:
        raise InvalidParameterValue(f"{fn} is decorated: register the plain function.")
    return text


def _imports(func: Callable[..., Any], fn: str) -> list[str]:
    """``import`` lines for the modules ``func`` reads as globals; refuses anything else it reads
    from outside itself."""
    found = inspect.getclosurevars(func)
    if found.nonlocals:
        raise InvalidParameterValue(
            f"{fn} reads {sorted(found.nonlocals)} from an enclosing function: a feature function runs "
            "on its own, so pass these values as parameters or define them inside it."
        )
    lines = []
    others = []
    for name, value in sorted(found.globals.items()):
        if isinstance(value, types.ModuleType):
            module = value.__name__
            lines.append(f"import {module}" if module == name else f"import {module} as {name}")
        elif value is not func and getattr(builtins, name, None) is not value:
            others.append(name)
    if others:
        raise InvalidParameterValue(
            f"{fn} reads the global name(s) {others}, which are not modules: a feature function runs "
            "on its own, so define them inside it or pass them as parameters (modules it uses, such "
            "as math, are imported for it)."
        )
    return lines


def definition_of(name: str, func: Any, description: str | None = None) -> FunctionDef:
    """The definition that registers ``func`` as feature function ``name``; a clear
    :class:`~modelport.errors.InvalidParameterValue` for what cannot be registered."""
    full_name = function_name(name)
    if not isinstance(func, types.FunctionType):
        raise InvalidParameterValue(
            f"create_function needs a plain Python function (def); got {type(func).__name__}."
        )
    fn = f"function {func.__name__!r}"
    if func.__name__ == "<lambda>":
        raise InvalidParameterValue("A lambda cannot be registered: define the function with def.")
    if inspect.isgeneratorfunction(func) or inspect.iscoroutinefunction(func):
        raise InvalidParameterValue(f"{fn} must return its value (not be a generator or async).")
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:  # a string annotation naming what is not importable
        raise InvalidParameterValue(f"The annotations of {fn} cannot be read: {exc}") from None
    parameters = []
    for parameter in inspect.signature(func).parameters.values():
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            raise InvalidParameterValue(
                f"Parameter {parameter.name!r} of {fn} must be a named one (no *args, **kwargs or "
                "positional-only parameters)."
            )
        annotation = hints.get(parameter.name, inspect.Parameter.empty)
        parameters.append((parameter.name, _spark_type(annotation, f"Parameter {parameter.name!r}", fn)))
    return_type = _spark_type(hints.get("return", inspect.Parameter.empty), "The result", fn)
    imports = _imports(func, fn)
    source = _source(func, fn)
    if imports:
        source = "\n".join(imports) + "\n\n\n" + source
    return FunctionDef(
        name=full_name,
        parameters=tuple(parameters),
        return_type=return_type,
        source=source,
        entry_point=func.__name__,
        description=description if description is not None else (inspect.getdoc(func) or ""),
    )
