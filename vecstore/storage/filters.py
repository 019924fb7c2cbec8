"""The metadata filter language: validated into a small tree, compiled to SQLite JSON1 SQL.

Semantics (the test-suite oracle implements the same rules independently):
- ``{"k": v}`` / ``{"k": {"$eq": v}}``: the value at ``k`` has v's JSON type and equals v
  (``true`` never equals ``1``); v must be a scalar (string, number, bool or null).
- ``$ne``: not ``$eq`` (a missing key counts as "not equal").
- ``$gt $gte $lt $lte``: numbers compare with numbers, strings with strings; nothing else matches.
- ``$in`` / ``$nin``: ``$eq`` against any of a list of scalars / its negation.
- ``$exists``: the key is present (an explicit JSON null is present).
- ``$contains``: the value at the key is an array with an element equal to v.
- ``$and`` / ``$or`` (non-empty lists), ``$not`` (an object); several keys in one object are ANDed.
- Dotted keys reach nested objects: ``"author.name"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vecstore.errors import InvalidFilter

Scalar = str | int | float | bool | None

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
FIELD_OPERATORS = (*COMPARISONS, "$in", "$nin", "$exists", "$contains")
COMBINATORS = ("$and", "$or", "$not")
MAX_DEPTH = 16
MAX_LIST = 1000


@dataclass(frozen=True, slots=True)
class FieldCondition:
    path: tuple[str, ...]
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class BoolNode:
    op: str  # "and" | "or" | "not"
    children: tuple[Node, ...]


Node = FieldCondition | BoolNode


def parse_filter(raw: Any) -> Node | None:
    """Validate a filter object; ``None`` or ``{}`` means "no filter"."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidFilter('filters must be a JSON object, e.g. {"genre": "news"}')
    if not raw:
        return None
    return _parse_object(raw, depth=0)


def _parse_object(obj: dict[str, Any], depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise InvalidFilter(f"filters are nested deeper than {MAX_DEPTH} levels")
    if not obj:
        raise InvalidFilter("an empty object is not a valid filter clause")
    parts: list[Node] = []
    for key, value in obj.items():
        if key.startswith("$"):
            parts.append(_parse_combinator(key, value, depth))
        else:
            parts.extend(_parse_field(key, value))
    return parts[0] if len(parts) == 1 else BoolNode("and", tuple(parts))


def _parse_combinator(key: str, value: Any, depth: int) -> Node:
    if key in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise InvalidFilter(f"'{key}' takes a non-empty list of filter objects")
        children = []
        for item in value:
            if not isinstance(item, dict):
                raise InvalidFilter(f"every item of '{key}' must be a filter object")
            children.append(_parse_object(item, depth + 1))
        return BoolNode(key[1:], tuple(children))
    if key == "$not":
        if not isinstance(value, dict):
            raise InvalidFilter("'$not' takes one filter object")
        return BoolNode("not", (_parse_object(value, depth + 1),))
    raise InvalidFilter(
        f"unknown filter operator '{key}' at the top level; use one of {', '.join(COMBINATORS)}"
        " or a metadata key"
    )


def _split_path(key: str) -> tuple[str, ...]:
    parts = tuple(key.split("."))
    if any(not p for p in parts):
        raise InvalidFilter(f"filter key '{key}' has an empty path segment")
    for part in parts:
        if '"' in part or "\\" in part:
            raise InvalidFilter(f"filter key '{key}' may not contain '\"' or '\\'")
    return parts


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _parse_field(key: str, value: Any) -> list[Node]:
    path = _split_path(key)
    if isinstance(value, dict):
        if not value:
            raise InvalidFilter(f"filter on '{key}' has an empty operator object")
        nodes: list[Node] = []
        for op, operand in value.items():
            nodes.append(_field_condition(key, path, op, operand))
        return nodes
    return [_field_condition(key, path, "$eq", value)]


def _field_condition(key: str, path: tuple[str, ...], op: str, operand: Any) -> FieldCondition:
    if op not in FIELD_OPERATORS:
        raise InvalidFilter(
            f"unknown filter operator '{op}' on '{key}'; supported: {', '.join(FIELD_OPERATORS)}"
        )
    if op in ("$eq", "$ne", "$contains"):
        if not _is_scalar(operand):
            raise InvalidFilter(f"'{op}' on '{key}' takes a string, number, boolean or null")
    elif op in ("$gt", "$gte", "$lt", "$lte"):
        if isinstance(operand, bool) or not isinstance(operand, str | int | float):
            raise InvalidFilter(f"'{op}' on '{key}' takes a number or a string")
    elif op in ("$in", "$nin"):
        if not isinstance(operand, list) or not all(_is_scalar(v) for v in operand):
            raise InvalidFilter(f"'{op}' on '{key}' takes a list of scalars")
        if len(operand) > MAX_LIST:
            raise InvalidFilter(f"'{op}' on '{key}' takes at most {MAX_LIST} values")
        operand = tuple(operand)
    elif op == "$exists" and not isinstance(operand, bool):
        raise InvalidFilter(f"'$exists' on '{key}' takes true or false")
    for number in operand if isinstance(operand, tuple) else (operand,):
        if _unsafe_number(number):
            raise InvalidFilter(
                f"'{op}' on '{key}': {number!r:.40} is outside the numbers filters compare"
                " exactly (finite, integers within ±2^53)"
            )
    return FieldCondition(path, op, operand)


SAFE_INTEGER = 2**53


def _unsafe_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -SAFE_INTEGER <= value <= SAFE_INTEGER
    if isinstance(value, float):
        return not math.isfinite(value)
    return False


class SqliteFilterCompiler:
    """Compiles a filter tree to a WHERE fragment over ``records.metadata`` with bound params.

    Keys and values are always bound parameters, never spliced into the SQL text.
    """

    def __init__(self, column: str = "metadata") -> None:
        self._column = column
        self.params: dict[str, Any] = {}

    def compile(self, node: Node) -> str:
        if isinstance(node, BoolNode):
            inner = [self.compile(c) for c in node.children]
            if node.op == "not":
                return f"NOT ({inner[0]})"
            joiner = " AND " if node.op == "and" else " OR "
            return "(" + joiner.join(f"({part})" for part in inner) + ")"
        return self._condition(node)

    def _bind(self, value: Any) -> str:
        name = f"f{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def _condition(self, cond: FieldCondition) -> str:
        # SQL is three-valued: json_type() of a missing key is NULL, and NOT NULL is NULL, which
        # would drop records with a missing key from $ne/$nin/$not. Every condition is made
        # strictly true/false.
        return f"COALESCE(({self._condition3(cond)}), 0)"

    def _condition3(self, cond: FieldCondition) -> str:
        path = self._bind("$" + "".join(f'."{p}"' for p in cond.path))
        col = self._column
        jtype = f"json_type({col}, {path})"
        jval = f"json_extract({col}, {path})"
        op, value = cond.op, cond.value
        if op == "$eq":
            return self._eq(jtype, jval, value)
        if op == "$ne":
            return f"NOT ({self._eq(jtype, jval, value)})"
        if op == "$in":
            if not value:
                return "0"
            return "(" + " OR ".join(f"({self._eq(jtype, jval, v)})" for v in value) + ")"
        if op == "$nin":
            if not value:
                return "1"
            return "NOT (" + " OR ".join(f"({self._eq(jtype, jval, v)})" for v in value) + ")"
        if op == "$exists":
            return f"{jtype} IS NOT NULL" if value else f"{jtype} IS NULL"
        if op == "$contains":
            elem = self._eq("je.type", "je.value", value)
            # Keys and values are bound parameters; only fixed SQL text is spliced in.
            sub = f"SELECT 1 FROM json_each({col}, {path}) AS je WHERE {elem}"  # noqa: S608
            return f"({jtype} = 'array' AND EXISTS ({sub}))"
        sql_op = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
        kind = "('integer', 'real')" if not isinstance(value, str) else "('text')"
        return f"({jtype} IN {kind} AND {jval} {sql_op} {self._bind(value)})"

    def _eq(self, jtype: str, jval: str, value: Scalar) -> str:
        return f"COALESCE(({self._eq3(jtype, jval, value)}), 0)"

    def _eq3(self, jtype: str, jval: str, value: Scalar) -> str:
        if value is None:
            return f"{jtype} = 'null'"
        if isinstance(value, bool):
            return f"{jtype} = '{'true' if value else 'false'}'"
        if isinstance(value, str):
            return f"({jtype} = 'text' AND {jval} = {self._bind(value)})"
        return f"({jtype} IN ('integer', 'real') AND {jval} = {self._bind(value)})"


def compile_sqlite(node: Node, column: str = "metadata") -> tuple[str, dict[str, Any]]:
    compiler = SqliteFilterCompiler(column)
    sql = compiler.compile(node)
    return sql, compiler.params
