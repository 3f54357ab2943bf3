"""Functions of one source file in any tree-sitter language, named and spanned by the rules of
its entry in languages.yaml (see trajlake.consumers.languages).

A file is parsed once; one tree-sitter query per language finds the definitions and bindings in
C, and only their ancestors are visited from Python, which keeps a 5,000-file commit in seconds.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import cache

from tree_sitter import Node, Query, QueryCursor
from tree_sitter_language_pack import get_language, get_parser

from trajlake.consumers.languages import Catalog, Language, LanguageError, NodeRule, catalog

_COMMENTS = frozenset({"comment", "line_comment", "block_comment", "multiline_comment"})
#: nodes that only hold other statements or one expression: looked through by is_trivial
_CONTAINERS = frozenset(
    {
        "block", "statement_block", "compound_statement", "statement_list", "function_body",
        "statements", "body_statement", "constructor_body", "block_body", "expression_list",
        "expression_statement", "parenthesized_expression", "arrow_expression_clause",
        "declaration_list",
    }
)  # fmt: skip
_GENERICS = re.compile(r"<[^<>]*>|\[[^\[\]]*\]")
Part = tuple[str | None, str]  # a piece of a qualified name: (separator before it, name)
_local = threading.local()  # a tree-sitter Parser is not safe to share between threads


class ParseError(ValueError):
    """A file that does not parse (tree-sitter reports an error node)."""


@dataclass(frozen=True)
class Found:
    """A definition: its qualified name, span (1-based lines) and whether it is trivial."""

    qualname: str
    line_start: int
    line_end: int
    trivial: bool


def functions_in(source: bytes, lang: Language, cat: Catalog | None = None) -> list[Found]:
    """Every function, method, constructor and named closure of one file, in line order;
    ParseError when the file does not parse."""
    tree = parser(lang.grammar).parse(source)
    root = tree.root_node
    if root.has_error:
        raise ParseError(f"{lang.title} syntax error near line {_first_error(root)}")
    cat = cat or catalog()
    found: list[Found] = []
    stack: list[tuple[int, Part | None]] = []  # enclosing captured nodes: (end byte, name)
    prefix = package(root, lang)
    for node in _captured(lang, root):
        while stack and stack[-1][0] <= node.start_byte:
            stack.pop()
        kind = node.type
        rule = lang.functions.get(kind) or lang.bindings.get(kind)
        if rule is None:  # a scope
            rule = lang.scopes[kind]
            name = _GENERICS.sub("", _name(node, rule, lang)).strip()
        else:
            name = _name(node, rule, lang)
            outer = prefix + [part for _, part in stack if part]
            if name and (f := definition(node, lang, cat, outer, name)):
                found.append(f)
        stack.append((node.end_byte, (rule.sep, name) if name else None))
    return sorted(found, key=lambda f: (f.line_start, f.line_end))


def definition(
    node: Node, lang: Language, cat: Catalog, outer: list[Part], name: str | None = None
) -> Found | None:
    """The function `node` defines (a definition with a body, or a binding of a closure to a
    name), or None; `outer`: the names around it (package, scopes: see `enclosing`)."""
    rule = lang.functions.get(node.type)
    if rule is None:  # a binding: a function only when its value is a closure
        rule = lang.bindings.get(node.type)
        value = _unwrap(_follow(node, rule.value)) if rule else None
        if value is None or value.type not in lang.lambdas:
            return None
        body_owner = value
    else:
        body_owner = node
        if _body(node, lang) is None and not lang.bodyless_is_empty:
            return None  # a declaration: an abstract method, a prototype, an overload signature
    name = name or _name(node, rule, lang)
    if not name:
        return None
    qualname = _join([*outer, (rule.sep, name)], lang)
    trivial = is_trivial(body_owner, lang, cat)
    return Found(qualname, _start_line(node, lang), node.end_point[0] + 1, trivial)


def _captured(lang: Language, root: Node) -> list[Node]:
    """Definitions, bindings and scopes, in document order, an enclosing node first."""
    captures = QueryCursor(_query(lang.key, lang.grammar)).captures(root)
    nodes = [n for group in captures.values() for n in group]
    return sorted(nodes, key=lambda n: (n.start_byte, -n.end_byte))


@cache
def _query(key: str, grammar: str) -> Query:
    lang = catalog().languages[key]
    types = sorted(set(lang.functions) | set(lang.bindings) | set(lang.scopes))
    try:
        return Query(get_language(grammar), "[" + " ".join(f"({t})" for t in types) + "] @def")
    except Exception as e:  # tree-sitter raises QueryError (or NameError) on unknown node types
        raise LanguageError(f"languages.yaml: {key}: a node type is not in {grammar}: {e}") from e


def parser(grammar: str):
    """This thread's tree-sitter parser for `grammar`."""
    parsers = _local.__dict__.setdefault("parsers", {})
    if grammar not in parsers:
        parsers[grammar] = get_parser(grammar)
    return parsers[grammar]


def _first_error(node: Node) -> int:
    stack = [node]
    while stack:
        n = stack.pop()
        if n.type == "ERROR" or n.is_missing:
            return n.start_point[0] + 1
        stack.extend(c for c in reversed(n.children) if c.has_error or c.is_missing)
    return node.start_point[0] + 1


def _follow(node: Node | None, path: tuple[str, ...]) -> Node | None:
    """The node at `path` from `node`: fields, `:type` children, `field*` repeated."""
    for step in path:
        if node is None:
            return None
        if step.endswith("*"):
            while (nxt := node.child_by_field_name(step[:-1])) is not None:
                node = nxt
        elif step.startswith(":"):
            node = next((c for c in node.named_children if c.type == step[1:]), None)
        else:
            node = node.child_by_field_name(step)
    return node


def _unwrap(node: Node | None) -> Node | None:
    while node is not None and node.type in ("expression_list", "parenthesized_expression"):
        inner = [c for c in node.named_children if c.type not in _COMMENTS]
        if len(inner) != 1:
            return node
        node = inner[0]
    return node


def _name(node: Node, rule: NodeRule, lang: Language) -> str:
    found = _follow(node, rule.name)
    text = found.text.decode(errors="replace").strip() if found is not None else ""
    if not text:
        return rule.fixed or ""
    if rule.receiver:
        receiver = _receiver(node.child_by_field_name(rule.receiver))
        return f"{receiver}.{text}" if receiver else text
    return text


def _receiver(params: Node | None) -> str:
    """Go: `(c *Circle)` → `(*Circle)`, `(s Stack[T])` → `Stack`."""
    decl = next((c for c in params.named_children if c.type == "parameter_declaration"), None)
    kind = decl.child_by_field_name("type") if decl is not None else None
    if kind is None:
        return ""
    pointer = kind.type == "pointer_type"
    text = _GENERICS.sub("", kind.text.decode(errors="replace")).lstrip("*").strip()
    return f"(*{text})" if pointer else text


def enclosing(node: Node, lang: Language) -> list[Part]:
    """(separator, name) of the enclosing scopes, functions and bindings, outermost first,
    found by walking up the parents (`functions_in` knows them from its query instead)."""
    names: list[tuple[str | None, str]] = []
    parent = node.parent
    while parent is not None:
        kind = parent.type
        rule = lang.scopes.get(kind) or lang.functions.get(kind) or lang.bindings.get(kind)
        if rule is not None:
            name = _name(parent, rule, lang)
            if kind in lang.scopes:
                name = _GENERICS.sub("", name).strip()
            if name:
                names.append((rule.sep, name))
        parent = parent.parent
    return names[::-1]


def package(root: Node, lang: Language) -> list[Part]:
    if not lang.package:
        return []
    clause = next((c for c in root.named_children if c.type == lang.package), None)
    name = clause.named_children[0].text.decode() if clause and clause.named_children else ""
    return [(None, name)] if name else []


def _join(parts: list[tuple[str | None, str]], lang: Language) -> str:
    text = ""
    for sep, name in parts:
        text = f"{text}{sep or lang.separator}{name}" if text else name
    return text


def _start_line(node: Node, lang: Language) -> int:
    """First line of the definition with its leading decorators, attributes or template."""
    # (tree-sitter finds a parent or a previous sibling by walking down from the root again:
    # asked only of the languages that have wrappers or leading nodes)
    while lang.wrappers and (parent := node.parent) is not None and parent.type in lang.wrappers:
        node = parent
    first = node
    sibling = node.prev_named_sibling if lang.leading else None
    while sibling is not None and sibling.type in lang.leading:
        first = sibling
        sibling = sibling.prev_named_sibling
    return first.start_point[0] + 1


def _body(node: Node, lang: Language) -> Node | None:
    for path in lang.body:
        found = _follow(node, (path,))
        if found is not None:
            return found
    return None


def is_trivial(owner: Node, lang: Language, cat: Catalog) -> bool:
    """Body empty, or one statement that returns nothing, a constant, a name or a field (an
    expression body counts as returned), or that says it is not implemented."""
    body = _body(owner, lang)
    if body is None:
        return lang.bodyless_is_empty and owner.type in lang.functions
    node = body
    while node.type in _CONTAINERS:
        inner = _statements(node)
        if len(inner) != 1:
            return not inner  # empty; or more than one statement
        node = inner[0]
    if cat.not_implemented.search(node.text.decode(errors="replace").strip()):
        return True
    if node.type in lang.returns:
        values = [c for c in node.named_children if c.type not in _COMMENTS]
        if not values:
            return True
        node = _unwrap(values[0]) if len(values) == 1 else values[0]
    return node is not None and node.type in lang.values


def _statements(node: Node, most: int = 2) -> list[Node]:
    """Up to `most` named children that are not comments (enough to tell 0, 1 or more)."""
    found = []
    for i in range(node.named_child_count):
        child = node.named_child(i)
        if child.type not in _COMMENTS:
            found.append(child)
            if len(found) == most:
                break
    return found
