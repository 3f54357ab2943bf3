"""The languages the function sampler reads, loaded from languages.yaml (the data) next to this
module: one `Language` per entry, and which language a path at a commit is written in.

Keys of an entry (all but `title`, `extensions` and `comment` optional):

- `title`: the name requests use ("Go"); `extensions`: file suffixes; `comment`: its line comment;
  `aliases`: other names configs may use for it (`ts` for typescript).
- `parser`: `ast` (Python's standard library) or, by default, tree-sitter with `grammar`.
- `tests`, `generated`: globs of files never sampled (tests; generated code), added to the
  top-level `vendored` and `generated` lists.
- `functions`: node types that define a function (a node without a body is a declaration and is
  left out); `scopes`: node types whose name qualifies what is inside (classes, impl blocks,
  modules); `bindings`: node types that bind a name to a value (a closure in `lambdas` bound
  this way is a function of that name). Each maps to options: `name` (the path to the name: a
  field, `:type` for the first child of that type, `field*` to follow a field while it exists),
  `value` (for bindings), `fixed` (a name for nodes without one), `sep` (joins this name to the
  enclosing one instead of the language's `separator`), `receiver` (Go's method receiver).
- `package`: a node type whose name starts every qualified name (Go's package clause).
- `leading`: node types before a definition that belong to it (decorators, attributes);
  `wrappers`: a parent that starts with it (C++ templates).
- `body`: where the body is (default the `body` field); `bodyless: empty` when a definition
  without one is empty rather than a declaration (Ruby). `returns`, `values`: return node types,
  and the value node types a trivial function returns (see syntax.is_trivial).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from trajlake.errors import TrajlakeError

DATA = Path(__file__).with_name("languages.yaml")
_HEAD_LINES = 10


class LanguageError(TrajlakeError):
    """languages.yaml, or a language named in the config, is not usable."""


@dataclass(frozen=True)
class NodeRule:
    """How one node type is named: see the module docstring."""

    name: tuple[str, ...] = ("name",)
    value: tuple[str, ...] = ("value",)
    fixed: str | None = None
    sep: str | None = None
    receiver: str | None = None


@dataclass(frozen=True)
class Language:
    key: str
    title: str
    extensions: tuple[str, ...]
    comment: str
    aliases: tuple[str, ...] = ()
    parser: str = "tree-sitter"
    grammar: str = ""
    separator: str = "."
    skip: tuple[str, ...] = ()
    generated: tuple[str, ...] = ()
    package: str | None = None
    functions: dict[str, NodeRule] = field(default_factory=dict)
    scopes: dict[str, NodeRule] = field(default_factory=dict)
    bindings: dict[str, NodeRule] = field(default_factory=dict)
    lambdas: frozenset[str] = frozenset()
    leading: frozenset[str] = frozenset()
    wrappers: frozenset[str] = frozenset()
    body: tuple[str, ...] = ("body",)
    bodyless_is_empty: bool = False
    returns: frozenset[str] = frozenset()
    values: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Catalog:
    """Every language, and the rules shared by all of them."""

    languages: dict[str, Language]
    vendored: tuple[str, ...]
    markers: re.Pattern[bytes]
    not_implemented: re.Pattern[str]
    shared_extensions: dict[str, tuple[str, ...]]

    def by_extension(self) -> dict[str, str]:
        return {ext: lang.key for lang in self.languages.values() for ext in lang.extensions}

    def resolve(self, names: list[str], where: str = "sampler.languages") -> list[str]:
        """Language keys for names or aliases (`ts` → typescript); LanguageError on others."""
        keys = {n: n for n in self.languages} | {
            a: lang.key for lang in self.languages.values() for a in lang.aliases
        }
        unknown = [n for n in names if n.lower() not in keys]
        if unknown:
            raise LanguageError(
                f"unknown language(s) {', '.join(unknown)} in {where}; known: "
                f"{', '.join(self.languages)} or an alias of one (see {DATA})"
            )
        return [keys[n.lower()] for n in names]


@cache
def catalog(path: str | Path = DATA) -> Catalog:
    """The languages of `path` (languages.yaml), read once per process."""
    try:
        data = yaml.safe_load(Path(path).read_text())
        languages = {key: _language(key, entry, data) for key, entry in data["languages"].items()}
        return Catalog(
            languages=languages,
            vendored=tuple(data.get("vendored", ())),
            markers=re.compile(data["markers"].encode()),
            not_implemented=re.compile(data["not_implemented"]),
            shared_extensions={k: tuple(v) for k, v in data.get("shared_extensions", {}).items()},
        )
    except (OSError, KeyError, TypeError, yaml.YAMLError, re.error) as e:
        raise LanguageError(f"{path} is not a valid languages file: {e!r}") from None


def _language(key: str, entry: dict[str, Any], data: dict[str, Any]) -> Language:
    def rules(name: str) -> dict[str, NodeRule]:
        return {t: _rule(opts or {}) for t, opts in (entry.get(name) or {}).items()}

    return Language(
        key=key,
        title=entry["title"],
        extensions=tuple(entry["extensions"]),
        comment=entry["comment"],
        aliases=tuple(entry.get("aliases", ())),
        parser=entry.get("parser", "tree-sitter"),
        grammar=entry.get("grammar", key),
        separator=entry.get("separator", "."),
        skip=tuple(entry.get("tests", ())),
        generated=tuple(data.get("generated", ())) + tuple(entry.get("generated", ())),
        package=entry.get("package"),
        functions=rules("functions"),
        scopes=rules("scopes"),
        bindings=rules("bindings"),
        lambdas=frozenset(entry.get("lambdas", ())),
        leading=frozenset(entry.get("leading", ())),
        wrappers=frozenset(entry.get("wrappers", ())),
        body=tuple(entry.get("body", ("body",))),
        bodyless_is_empty=entry.get("bodyless") == "empty",
        returns=frozenset(entry.get("returns", ())),
        values=frozenset(entry.get("values", ())),
    )


def _rule(opts: dict[str, Any]) -> NodeRule:
    return NodeRule(
        name=tuple(opts.get("name", ("name",))),
        value=tuple(opts.get("value", ("value",))),
        fixed=opts.get("fixed"),
        sep=opts.get("sep"),
        receiver=opts.get("receiver"),
    )


def matches(path: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """A pattern without `/` matches the file name, one with `/` the whole path."""
    by_name, by_path = _compiled(tuple(patterns))
    return bool(by_name.match(path.rsplit("/", 1)[-1]) or by_path.match(path))


@cache
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """One regex for the name patterns, one for the path patterns (fnmatch's syntax)."""

    def union(globs: list[str]) -> re.Pattern[str]:
        return re.compile("|".join(fnmatch.translate(g) for g in globs) or "(?!)")

    return union([p for p in patterns if "/" not in p]), union([p for p in patterns if "/" in p])


def detect(paths: list[str], cat: Catalog | None = None) -> dict[str, str]:
    """The language of each path that has one (by extension; a shared extension such as `.h`
    goes to the first of its languages whose own files occur among `paths`)."""
    cat = cat or catalog()
    by_ext = cat.by_extension()
    found: dict[str, str] = {}
    for path in paths:
        ext = _extension(path)
        if ext in by_ext:
            found[path] = by_ext[ext]
    present = set(found.values())
    for ext, candidates in cat.shared_extensions.items():
        owner = next((c for c in candidates if c in present), candidates[-1])
        for path in paths:
            if _extension(path) == ext:
                found[path] = owner
    return found


def _extension(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name[name.rfind(".") :].lower() if "." in name[1:] else ""


def is_generated(path: str, source: bytes, lang: Language, cat: Catalog | None = None) -> bool:
    """A generated file: by name (the language's `generated` globs) or by a marker in a comment
    among its first 10 lines."""
    cat = cat or catalog()
    if matches(path, lang.generated):
        return True
    block = (b"/*", b"*") if lang.comment == "//" else ()  # C-like block comments
    prefixes = (lang.comment.encode(), *block)
    for line in source.splitlines()[:_HEAD_LINES]:
        if b"DO NOT EDIT" in line:
            return True
        stripped = line.lstrip()
        if stripped.startswith(prefixes) and cat.markers.search(stripped):
            return True
    return False
