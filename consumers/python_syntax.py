"""Python functions from the standard library's `ast` (the sampler's first language: its task
ids and spans are kept exactly as they were before the other languages came)."""

from __future__ import annotations

import ast
import threading
import warnings

from trajlake.consumers.syntax import Found

_WARNINGS_LOCK = threading.Lock()  # catch_warnings swaps global state: one thread at a time
_FuncDef = ast.FunctionDef | ast.AsyncFunctionDef


def python_functions(source: bytes, path: str) -> list[Found]:
    """Functions and methods of one file (`Class.method`, `outer.inner`), in line order, spans
    with their decorators; SyntaxError when it does not parse."""
    with _WARNINGS_LOCK, warnings.catch_warnings():  # invalid escapes in the repository's code
        warnings.simplefilter("ignore")
        tree = ast.parse(source, filename=path)
    found: list[tuple[str, _FuncDef]] = []
    _collect(tree, [], found)
    return [
        Found(
            qualname,
            start := min([node.lineno] + [d.lineno for d in node.decorator_list]),
            node.end_lineno or start,
            is_trivial(node),
        )
        for qualname, node in sorted(found, key=lambda f: f[1].lineno)
    ]


def _collect(node: ast.AST, stack: list[str], found: list[tuple[str, _FuncDef]]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            _collect(child, [*stack, child.name], found)
        elif isinstance(child, _FuncDef):
            found.append((".".join([*stack, child.name]), child))
            _collect(child, [*stack, child.name], found)
        else:  # definitions inside if / try / with blocks
            _collect(child, stack, found)


def is_trivial(node: _FuncDef) -> bool:
    """Body (docstring aside) empty or one `pass`, `...`, `raise NotImplementedError`, or
    `return` of nothing, a constant, a name or an attribute."""
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if len(body) != 1:
        return not body
    stmt = body[0]
    if isinstance(stmt, ast.Raise):
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    if isinstance(stmt, ast.Return):
        return stmt.value is None or isinstance(stmt.value, ast.Constant | ast.Name | ast.Attribute)
    return isinstance(stmt, ast.Pass) or (
        isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
    )
