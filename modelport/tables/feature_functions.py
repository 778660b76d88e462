"""Feature functions: Python functions registered with modelport that compute a feature from
other columns at training and at serving time (Databricks' ``FeatureFunction`` over a Unity
Catalog Python UDF).

A :class:`FunctionDef` is everything needed to run one: its name (``catalog.schema.function``,
lower-cased), its parameters and return type (Spark SQL names: ``bigint``, ``double``,
``string``, ``boolean`` and the narrower integer and float types), and the Python source of a
module whose ``entry_point`` is the function. The same definition is stored by the server
(``/api/2.0/feature-engineering/functions``) and copied into every feature spec that uses it, so
a served model never asks the server for it.

Checking a definition (:meth:`FunctionDef.__post_init__`) only parses the source: nothing runs
until the first :meth:`FunctionDef.call`, which executes the module once (in the process that
calls it) and keeps the function. Values cross the boundary typed as Spark would hand them to a
Python UDF: ``None`` for a null (a float NaN too), ``int``, ``float``, ``str``, ``bool``;
arguments and the result are converted where that loses nothing (``3.0`` to a ``bigint``
parameter is ``3``) and refused otherwise.
"""

from __future__ import annotations

import ast
import math
import operator
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import InvalidParameterValue
from modelport.tables.names import split_name

__all__ = ["FUNCTION_TYPES", "FunctionDef", "FunctionValueError", "function_name"]

_INTEGERS = ("tinyint", "smallint", "int", "bigint")
_FLOATS = ("float", "double")
#: The Spark SQL types a feature function's parameters and result may have.
FUNCTION_TYPES = (*_INTEGERS, *_FLOATS, "string", "boolean")


class FunctionValueError(ValueError):
    """A value that does not fit a function's parameter or return type."""


def function_name(name: Any) -> str:
    """A feature function's ``catalog.schema.function`` name, checked and lower-cased."""
    if not isinstance(name, str):
        raise InvalidParameterValue(f"A feature function's name must be a string; got {name!r}.")
    try:
        return ".".join(split_name(name))
    except InvalidParameterValue:
        raise InvalidParameterValue(
            f"Feature function name {name!r} must be catalog.schema.function (letters, digits and "
            "underscores in each part)."
        ) from None


def _numpy_bool(value: Any) -> bool:
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_")


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or _numpy_bool(value):
        raise FunctionValueError
    if isinstance(value, float):
        if not value.is_integer():
            raise FunctionValueError
        return int(value)
    try:
        return operator.index(value)  # int, numpy integers
    except TypeError:
        raise FunctionValueError from None


def _to_float(value: Any) -> float:
    if isinstance(value, bool | str | bytes) or _numpy_bool(value):
        raise FunctionValueError
    try:
        return float(value)
    except (TypeError, ValueError):
        raise FunctionValueError from None


def _to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise FunctionValueError
    return value


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if _numpy_bool(value):
        return bool(value)
    raise FunctionValueError


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(_INTEGERS, _to_int),
    **dict.fromkeys(_FLOATS, _to_float),
    "string": _to_str,
    "boolean": _to_bool,
}


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NaTType", "NAType")


def _check_type(kind: Any, what: str) -> str:
    if not isinstance(kind, str) or kind.strip().lower() not in FUNCTION_TYPES:
        raise InvalidParameterValue(f"{what} must be one of {', '.join(FUNCTION_TYPES)}; got {kind!r}.")
    return kind.strip().lower()


_ANNOTATIONS = {"int": "bigint", "float": "double", "str": "string", "bool": "boolean"}


def _annotated_type(node: ast.expr | None, what: str) -> str:
    """The Spark type of an annotation's syntax tree (``float``, ``float | None``,
    ``Optional[float]``, ``"float"``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            node = None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        sides = [node.left, node.right]
        rest = [n for n in sides if not (isinstance(n, ast.Constant) and n.value is None)]
        if len(rest) == 1:
            node = rest[0]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name | ast.Attribute):
        head = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
        if head == "Optional":
            node = node.slice
    if isinstance(node, ast.Name) and node.id in _ANNOTATIONS:
        return _ANNOTATIONS[node.id]
    if node is None:
        raise InvalidParameterValue(
            f"{what} has no type annotation: annotate it with int, float, str or bool."
        )
    raise InvalidParameterValue(
        f"{what} is annotated {ast.unparse(node)}; a feature function takes and returns int, float, str "
        "or bool."
    )


@dataclass(frozen=True)
class FunctionDef:
    """One feature function.

    Invariants (checked on construction, without running anything): ``name`` is a valid
    lower-case three-part name; parameter names are unique identifiers; every type is one of
    :data:`FUNCTION_TYPES`; ``source`` parses and defines ``entry_point`` at its top level with
    exactly these parameters, none of them ``*args`` or ``**kwargs``.
    """

    name: str
    parameters: tuple[tuple[str, str], ...]
    return_type: str
    source: str
    entry_point: str
    description: str = ""
    _compiled: list[Callable[..., Any]] = field(
        default_factory=list, init=False, repr=False, compare=False, hash=False
    )
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", function_name(self.name))
        parameters = tuple(
            (str(p), _check_type(t, f"The type of parameter {p!r} of {self.name}"))
            for p, t in self.parameters
        )
        object.__setattr__(self, "parameters", parameters)
        object.__setattr__(
            self, "return_type", _check_type(self.return_type, f"The return type of {self.name}")
        )
        names = [p for p, _ in parameters]
        if len(set(names)) != len(names):
            raise InvalidParameterValue(f"Feature function {self.name} names a parameter twice: {names}.")
        if not isinstance(self.source, str) or not self.source.strip():
            raise InvalidParameterValue(f"Feature function {self.name} has no source.")
        if not isinstance(self.entry_point, str) or not self.entry_point.isidentifier():
            raise InvalidParameterValue(
                f"The entry point of feature function {self.name} must be a Python name; "
                f"got {self.entry_point!r}."
            )
        try:
            module = ast.parse(self.source)
        except SyntaxError as exc:
            raise InvalidParameterValue(
                f"The source of feature function {self.name} is not valid Python: {exc.msg} "
                f"(line {exc.lineno})."
            ) from None
        defs = [
            node
            for node in module.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == self.entry_point
        ]
        if not defs or isinstance(defs[-1], ast.AsyncFunctionDef):
            raise InvalidParameterValue(
                f"The source of feature function {self.name} defines no function {self.entry_point!r} "
                "at its top level."
            )
        args = defs[-1].args
        if args.vararg is not None or args.kwarg is not None or args.posonlyargs:
            raise InvalidParameterValue(
                f"Function {self.entry_point!r} of {self.name} must take named parameters only "
                "(no *args, **kwargs or positional-only ones)."
            )
        declared = [a.arg for a in (*args.args, *args.kwonlyargs)]
        if declared != names:
            raise InvalidParameterValue(
                f"Function {self.entry_point!r} of {self.name} takes {declared}, but the definition "
                f"declares the parameters {names}."
            )

    # ---- views -------------------------------------------------------------------------------
    @property
    def parameter_names(self) -> list[str]:
        return [p for p, _ in self.parameters]

    # ---- running -----------------------------------------------------------------------------
    def _function(self) -> Callable[..., Any]:
        if not self._compiled:
            with self._lock:
                if not self._compiled:
                    namespace: dict[str, Any] = {"__name__": f"modelport_feature_function.{self.name}"}
                    exec(compile(self.source, f"<feature function {self.name}>", "exec"), namespace)
                    self._compiled.append(namespace[self.entry_point])
        return self._compiled[0]

    def call(self, **kwargs: Any) -> Any:
        """The function's result for ``kwargs`` (one value per parameter), typed as declared.

        Raises :class:`FunctionValueError` when an argument or the result does not fit its type
        (saying which); whatever the function itself raises propagates. The module is executed on
        the first call (its errors propagate too).
        """
        fn = self._function()
        args: dict[str, Any] = {}
        for parameter, kind in self.parameters:
            value = kwargs.get(parameter)
            if _is_null(value):
                args[parameter] = None
                continue
            try:
                args[parameter] = _CONVERTERS[kind](value)
            except FunctionValueError:
                raise FunctionValueError(
                    f"parameter {parameter!r} ({kind}) cannot be {value!r} ({type(value).__name__})"
                ) from None
        result = fn(**args)
        if _is_null(result):
            return None
        try:
            return _CONVERTERS[self.return_type](result)
        except FunctionValueError:
            raise FunctionValueError(
                f"it returned {result!r} ({type(result).__name__}), not a {self.return_type}"
            ) from None

    @classmethod
    def from_source(cls, name: str, source: str, entry_point: str, description: str = "") -> FunctionDef:
        """The definition of function ``entry_point`` of the module ``source``, its parameter and
        result types read from its annotations (``int``, ``float``, ``str``, ``bool``, or one of
        them ``| None``/``Optional[...]``), without running anything."""
        try:
            module = ast.parse(source)
        except SyntaxError as exc:
            raise InvalidParameterValue(
                f"The source is not valid Python: {exc.msg} (line {exc.lineno})."
            ) from None
        defs = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == entry_point]
        if not defs:
            raise InvalidParameterValue(f"The source defines no function {entry_point!r} at its top level.")
        node = defs[-1]
        fn = f"function {entry_point!r}"
        parameters = tuple(
            (a.arg, _annotated_type(a.annotation, f"Parameter {a.arg!r} of {fn}"))
            for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)
        )
        return cls(
            name=name,
            parameters=parameters,
            return_type=_annotated_type(node.returns, f"The result of {fn}"),
            source=source,
            entry_point=entry_point,
            description=description or (ast.get_docstring(node) or ""),
        )

    # ---- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"name", "parameters": [{"name", "type"}], "return_type", "entry_point", "source",
        "description"}``: the server's and the spec's form."""
        return {
            "name": self.name,
            "parameters": [{"name": p, "type": t} for p, t in self.parameters],
            "return_type": self.return_type,
            "entry_point": self.entry_point,
            "source": self.source,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> FunctionDef:
        """Parse :meth:`to_dict`'s form (other keys are ignored); 400 saying what is wrong."""
        if not isinstance(body, Mapping):
            raise InvalidParameterValue("A feature function must be an object.")
        parameters = body.get("parameters")
        if parameters is None:
            parameters = []
        if not isinstance(parameters, list) or not all(
            isinstance(p, Mapping) and isinstance(p.get("name"), str) for p in parameters
        ):
            raise InvalidParameterValue(
                'Invalid value for \'parameters\': must be a list of {"name", "type"}.'
            )
        description = body.get("description") or ""
        if not isinstance(description, str):
            raise InvalidParameterValue("Invalid value for 'description': must be a string.")
        for key in ("name", "return_type", "source", "entry_point"):
            if not isinstance(body.get(key), str):
                raise InvalidParameterValue(f"Missing required field {key!r} of the feature function.")
        return cls(
            name=body["name"],
            parameters=tuple((p["name"], p.get("type")) for p in parameters),
            return_type=body["return_type"],
            source=body["source"],
            entry_point=body["entry_point"],
            description=description,
        )
