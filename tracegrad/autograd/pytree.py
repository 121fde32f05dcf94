"""Pytrees: nested tuples, lists, dicts (and namedtuples) of leaves, as in JAX.

    >>> leaves, tree = flatten({"b": (1, 2), "a": [3]})
    >>> leaves
    [3, 1, 2]
    >>> unflatten(tree, [30, 10, 20])
    {'a': [30], 'b': (10, 20)}

Dict keys are visited in sorted order (as JAX); `None` is an empty subtree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class TreeDef:
    __slots__ = ("kind", "meta", "children")

    def __init__(self, kind: str, meta: Any, children: tuple) -> None:
        self.kind = kind
        self.meta = meta
        self.children = children

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TreeDef) and (self.kind, self.meta, self.children) == (
            other.kind,
            other.meta,
            other.children,
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.meta, self.children))

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    def __repr__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        inner = ", ".join(repr(c) for c in self.children)
        if self.kind == "dict":
            inner = ", ".join(f"{k!r}: {c!r}" for k, c in zip(self.meta, self.children))
            return "{" + inner + "}"
        return ("[" + inner + "]") if self.kind == "list" else ("(" + inner + ")")


LEAF = TreeDef("leaf", None, ())


def flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list, TreeDef]:
    leaves: list = []
    treedef = _flatten(tree, leaves, is_leaf)
    return leaves, treedef


def _flatten(tree: Any, leaves: list, is_leaf: Any) -> TreeDef:
    if is_leaf is not None and is_leaf(tree):
        leaves.append(tree)
        return LEAF
    if tree is None:
        return TreeDef("none", None, ())
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        children = tuple(_flatten(c, leaves, is_leaf) for c in tree)
        return TreeDef("namedtuple", type(tree), children)
    if isinstance(tree, (tuple, list)):
        children = tuple(_flatten(c, leaves, is_leaf) for c in tree)
        return TreeDef("tuple" if isinstance(tree, tuple) else "list", None, children)
    if isinstance(tree, dict):
        keys = tuple(sorted(tree))
        children = tuple(_flatten(tree[k], leaves, is_leaf) for k in keys)
        return TreeDef("dict", keys, children)
    leaves.append(tree)
    return LEAF


def unflatten(treedef: TreeDef, leaves: Any) -> Any:
    it = iter(leaves)
    out = _unflatten(treedef, it)
    return out


def _unflatten(td: TreeDef, it: Any) -> Any:
    if td.kind == "leaf":
        return next(it)
    if td.kind == "none":
        return None
    children = [_unflatten(c, it) for c in td.children]
    if td.kind == "tuple":
        return tuple(children)
    if td.kind == "list":
        return children
    if td.kind == "namedtuple":
        return td.meta(*children)
    return dict(zip(td.meta, children))


def tree_map(fn: Callable, tree: Any, *rest: Any) -> Any:
    leaves, td = flatten(tree)
    others = [flatten(r)[0] for r in rest]
    return unflatten(td, [fn(x, *xs) for x, *xs in zip(leaves, *others)])
