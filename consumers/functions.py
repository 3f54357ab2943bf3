"""The functions of source files: `Function`, one file (`enumerate_functions`), and many files
at once (`parse_files`), in worker processes when a commit is large, each blob once.

tree-sitter holds the GIL while it parses, so threads do not help; a commit of
`PARALLEL_FROM` files or more is parsed by a pool of spawned processes (spawned, not forked:
the pipeline runs stages in threads, and a fork copies their locks mid-use). The pool is made
once per process and reused for every later commit.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from trajlake.consumers import languages as langs
from trajlake.consumers.python_syntax import python_functions
from trajlake.consumers.syntax import functions_in
from trajlake.errors import TrajlakeError

log = logging.getLogger(__name__)

#: what a file's contents give, whatever its path: (qualname, start, end, id_name) per function
Entries = tuple[tuple[str, int, int, str], ...]


PARALLEL_FROM = 256  # files; below this a pool costs more than it saves
CACHE_BLOBS = 200_000  # blobs whose functions are remembered (tens of MB at most)
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_cache: OrderedDict[tuple[str, str, bool], Entries | str] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Function:
    """A function or method at a commit.

    Attributes:
        file: path relative to the repository root.
        qualname: by its language's convention: `Class.method`, `outer.inner`,
            `pkg.(*Recv).Method`, `Type::method`, `Mod::Class#method` (languages.yaml).
        line_start: first line, decorators included; line_end: last line.
        id_name: the name its task ids are made from: `qualname`, or `qualname@line_start`
            for a later definition of a name already defined in the file (property setters,
            overloads).
        language: a key of languages.yaml.
    """

    file: str
    qualname: str
    line_start: int
    line_end: int
    id_name: str
    language: str = "python"


def enumerate_functions(
    source: bytes, path: str, skip_trivial: bool = True, language: str | None = None
) -> list[Function]:
    """Functions and methods of one file, in line order (its language from its extension unless
    given); SyntaxError (Python) or syntax.ParseError when it does not parse."""
    language = language or langs.detect([path]).get(path)
    if language is None:
        raise TrajlakeError(f"{path}: no language in languages.yaml has its extension")
    return _functions(path, language, _entries(source, path, language, skip_trivial))


def _entries(source: bytes, path: str, language: str, skip_trivial: bool) -> Entries:
    if language == "python":
        found = python_functions(source, path)
    else:
        found = functions_in(source, langs.catalog().languages[language])
    entries = []
    seen: set[str] = set()
    for f in found:
        id_name = f.qualname if f.qualname not in seen else f"{f.qualname}@{f.line_start}"
        seen.add(f.qualname)
        if not (skip_trivial and f.trivial):
            entries.append((f.qualname, f.line_start, f.line_end, id_name))
    return tuple(entries)


def _functions(path: str, language: str, entries: Entries) -> list[Function]:
    return [Function(path, q, start, end, id_name, language) for q, start, end, id_name in entries]


#: one file to parse: (path, language, blob sha, contents)
Item = tuple[str, str, str, bytes]


def parse_files(
    items: list[Item], skip_trivial: bool, workers: int = 0
) -> list[list[Function] | str]:
    """Per item, its functions, or why it does not parse (a message). A blob parsed before (in
    this process, recently) is not parsed again: the next commit costs its changed files.
    `workers`: processes (0: one per CPU, at most 8, for `PARALLEL_FROM` files or more to
    parse; 1: this process only)."""
    keys = [(sha, language, skip_trivial) for _, language, sha, _ in items]
    with _cache_lock:
        known = {k: _cache[k] for k in keys if k in _cache}
        for k in known:
            _cache.move_to_end(k)
    todo = list({k: item for k, item in zip(keys, items, strict=True) if k not in known}.items())
    parsed = _parse_all([item for _, item in todo], skip_trivial, workers)
    with _cache_lock:
        for (k, _), result in zip(todo, parsed, strict=True):
            _cache[k] = known[k] = result
        while len(_cache) > CACHE_BLOBS:
            _cache.popitem(last=False)
    return [
        known[k] if isinstance(known[k], str) else _functions(path, language, known[k])
        for k, (path, language, _, _) in zip(keys, items, strict=True)
    ]


def _parse_all(items: list[Item], skip_trivial: bool, workers: int) -> list[Entries | str]:
    count = workers or (min(os.cpu_count() or 1, 8) if len(items) >= PARALLEL_FROM else 1)
    if count <= 1 or len(items) < 2:
        return _parse_chunk(items, skip_trivial)
    size = -(-len(items) // (count * 4))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    try:
        parts = list(_get_pool(count).map(_parse_chunk, chunks, [skip_trivial] * len(chunks)))
    except BrokenProcessPool as e:  # a worker died (out of memory?): do it here instead
        log.warning("parser processes failed (%s); parsing in this process", e)
        _reset_pool()
        return _parse_chunk(items, skip_trivial)
    return [result for part in parts for result in part]


def _parse_chunk(items: list[Item], skip_trivial: bool) -> list[Entries | str]:
    results: list[Entries | str] = []
    for path, language, _, source in items:
        try:
            results.append(_entries(source, path, language, skip_trivial))
        except (SyntaxError, ValueError, RecursionError) as e:
            results.append(f"{type(e).__name__}: {e}")
    return results


def _get_pool(count: int) -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != count:
            if _pool is not None:
                _pool.shutdown(wait=False)
            context = multiprocessing.get_context("spawn")
            _pool = ProcessPoolExecutor(count, mp_context=context)
        return _pool


def _reset_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def clear_cache() -> None:
    """Forget every blob parsed so far (benchmarks measure a first commit)."""
    with _cache_lock:
        _cache.clear()
