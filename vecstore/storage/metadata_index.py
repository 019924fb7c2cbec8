"""An in-memory columnar index of record metadata, so filters run as numpy masks.

Resolving a filter in SQLite means parsing every row's JSON on every query (about 1 µs a row:
100 ms at 100k records). Here each key path seen in any record becomes a sparse column — the rows
that have it, the JSON kind of the value, and its number or string — and a filter is evaluated as
vectorised comparisons over those columns. The semantics are exactly those documented in
``filters.py`` (the SQL compiler there serves ``scroll``); the test suite checks both against one
oracle. Rows are the ``VectorTable``'s rows; dead rows are masked out by the caller.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import numpy as np

from vecstore.storage.filters import BoolNode, FieldCondition, Node

NULL, FALSE, TRUE, NUMBER, STRING, ARRAY, OBJECT = range(1, 8)


def _kind(value: Any) -> int:
    if value is None:
        return NULL
    if value is True:
        return TRUE
    if value is False:
        return FALSE
    if isinstance(value, int | float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, list):
        return ARRAY
    return OBJECT


def _as_float(value: int | float) -> float:
    # Writes reject integers beyond ±2^53, but rows stored before that rule must still load.
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def _scalar_equal(element: Any, value: Any) -> bool:
    """JSON equality of two scalars: the kinds must agree (``true`` is not ``1``)."""
    kind = _kind(element)
    if kind != _kind(value):
        return False
    return kind in (NULL, TRUE, FALSE) or bool(element == value)


class _Column:
    """One key path's values. Rows, kinds and numbers are packed machine arrays (8, 1 and 8 bytes
    a row) rather than lists of Python ints and floats (~40 bytes a row each), since a column
    lives as long as its collection."""

    __slots__ = ("_cache", "arrays", "kinds", "nums", "rows", "strs")

    def __init__(self) -> None:
        self.rows = array("q")
        self.kinds = array("b")
        self.nums = array("d")
        self.strs: list[str | None] = []
        self.arrays: dict[int, list[Any]] = {}  # row -> array value, for $contains
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, row: int, value: Any) -> None:
        kind = _kind(value)
        self.rows.append(row)
        self.kinds.append(kind)
        self.nums.append(_as_float(value) if kind == NUMBER else math.nan)
        self.strs.append(value if kind == STRING else None)
        if kind == ARRAY:
            self.arrays[row] = value
        self._cache = None

    def arrays_np(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._cache is None:
            strs = np.empty(len(self.strs), dtype=object)
            strs[:] = self.strs
            # Copies: an array exporting its buffer to numpy could no longer grow.
            self._cache = (
                np.array(self.rows, dtype=np.int64),
                np.array(self.kinds, dtype=np.int8),
                np.array(self.nums, dtype=np.float64),
                strs,
            )
        return self._cache


class MetadataIndex:
    def __init__(self) -> None:
        self.columns: dict[tuple[str, ...], _Column] = {}

    def add(self, row: int, metadata: dict[str, Any]) -> None:
        self._add_object(row, (), metadata)

    def _add_object(self, row: int, prefix: tuple[str, ...], obj: dict[str, Any]) -> None:
        for key, value in obj.items():
            path = (*prefix, key)
            column = self.columns.get(path)
            if column is None:
                column = self.columns[path] = _Column()
            column.add(row, value)
            if isinstance(value, dict):
                self._add_object(row, path, value)

    def evaluate(self, node: Node, size: int) -> np.ndarray:
        """A bool mask over rows ``0..size-1`` of the rows the filter matches."""
        if isinstance(node, BoolNode):
            masks = [self.evaluate(child, size) for child in node.children]
            if node.op == "not":
                return ~masks[0]
            out = masks[0].copy()
            for mask in masks[1:]:
                if node.op == "and":
                    out &= mask
                else:
                    out |= mask
            return out
        return self._condition(node, size)

    def _condition(self, cond: FieldCondition, size: int) -> np.ndarray:
        op, value = cond.op, cond.value
        if op == "$ne":
            return ~self._condition(FieldCondition(cond.path, "$eq", value), size)
        if op == "$nin":
            return ~self._condition(FieldCondition(cond.path, "$in", value), size)
        out = np.zeros(size, dtype=bool)
        column = self.columns.get(cond.path)
        if column is None:
            return out if op != "$exists" or value else ~out
        rows, kinds, nums, strs = column.arrays_np()
        if op == "$exists":
            out[rows[rows < size]] = True
            return out if value else ~out
        if op == "$contains":
            hits = [
                r for r, arr in column.arrays.items() if any(_scalar_equal(e, value) for e in arr)
            ]
            hit_rows = np.asarray(hits, dtype=np.int64)
            out[hit_rows[hit_rows < size]] = True
            return out
        if op == "$eq":
            sel = self._equal(kinds, nums, strs, value)
        elif op == "$in":
            sel = np.zeros(len(rows), dtype=bool)
            for item in value:
                sel |= self._equal(kinds, nums, strs, item)
        else:
            sel = self._compare(op, kinds, nums, strs, value)
        picked = rows[sel]
        out[picked[picked < size]] = True
        return out

    @staticmethod
    def _equal(kinds: np.ndarray, nums: np.ndarray, strs: np.ndarray, value: Any) -> np.ndarray:
        kind = _kind(value)
        sel: np.ndarray
        if kind in (NULL, TRUE, FALSE):
            sel = kinds == kind
        elif kind == NUMBER:
            sel = (kinds == NUMBER) & (nums == float(value))
        else:
            sel = kinds == STRING
            sel[sel] = strs[sel] == value
        return sel

    @staticmethod
    def _compare(
        op: str, kinds: np.ndarray, nums: np.ndarray, strs: np.ndarray, value: Any
    ) -> np.ndarray:
        sel: np.ndarray
        if isinstance(value, str):
            sel = kinds == STRING
            candidates = strs[sel]
        else:
            sel = kinds == NUMBER
            candidates = nums[sel]
            value = float(value)
        if op == "$gt":
            passed = candidates > value
        elif op == "$gte":
            passed = candidates >= value
        elif op == "$lt":
            passed = candidates < value
        else:
            passed = candidates <= value
        sel[sel] = np.asarray(passed, dtype=bool)
        return sel
