"""Which files of a commit the function sampler reads, and in which language: every blob whose
extension names a language (sampler.languages, when set, limits them), less tests, vendored and
generated files (by the globs of languages.yaml and sampler.skip, and by the repository's own
`.gitattributes`: `linguist-generated` and `linguist-vendored`, read at the commit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from trajlake.config import SamplerConfig
from trajlake.consumers.languages import Catalog, catalog, detect, matches
from trajlake.producers.git import Blob, read_blobs, tree_blobs

_LINGUIST = ("linguist-generated", "linguist-vendored")


@dataclass(frozen=True)
class SourceFile:
    path: str
    sha: str
    language: str


def source_files(
    git_dir: str | Path, commit: str, sampler: SamplerConfig, cat: Catalog | None = None
) -> list[SourceFile]:
    """The files to sample at `commit`, sorted by path (contents still to be read)."""
    cat = cat or catalog()
    blobs = tree_blobs(git_dir, commit)
    languages = detect([b.path for b in blobs], cat)
    excluded = linguist_excluded(git_dir, blobs)
    wanted = set(sampler.languages or cat.languages)  # keys: the config resolved aliases
    files = []
    for blob in blobs:
        key = languages.get(blob.path)
        if key is None or key not in wanted or blob.path in excluded:
            continue
        lang = cat.languages[key]
        if matches(blob.path, (*cat.vendored, *lang.skip, *lang.generated, *sampler.skip)):
            continue
        files.append(SourceFile(blob.path, blob.sha, key))
    return files


def linguist_excluded(git_dir: str | Path, blobs: list[Blob]) -> set[str]:
    """Paths that the commit's `.gitattributes` files mark linguist-generated or
    linguist-vendored (a deeper file's rules come later and win, as in git)."""
    attribute_files = sorted(
        (b for b in blobs if b.path.rsplit("/", 1)[-1] == ".gitattributes"),
        key=lambda b: b.path.count("/"),
    )
    if not attribute_files:
        return set()
    contents = read_blobs(git_dir, [b.sha for b in attribute_files])
    rules: list[tuple[re.Pattern[str], bool]] = []
    for blob in attribute_files:
        base = blob.path.rsplit("/", 1)[0] + "/" if "/" in blob.path else ""
        rules += parse_gitattributes(contents[blob.sha].decode(errors="replace"), base)
    excluded = set()
    for blob in blobs:
        state = False
        for pattern, value in rules:
            if pattern.fullmatch(blob.path):
                state = value
        if state:
            excluded.add(blob.path)
    return excluded


def parse_gitattributes(text: str, base: str = "") -> list[tuple[re.Pattern[str], bool]]:
    """(path regex, excluded) for each line that sets or unsets a linguist attribute
    (`linguist-generated`, `linguist-vendored=true`, `-linguist-generated`, `…=false`)."""
    rules = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        for attr in fields[1:]:
            name, _, value = attr.lstrip("-!").partition("=")
            if name in _LINGUIST:
                unset = attr.startswith(("-", "!")) or value.lower() in ("false", "0")
                rules.append((_pattern(fields[0], base), not unset))
    return rules


def _pattern(glob: str, base: str) -> re.Pattern[str]:
    """A gitattributes glob as a regex on repository paths: without a `/` (but a trailing
    one) it matches a name at any depth below `base`, otherwise a path relative to `base`;
    `**` crosses directories, `*` does not; a match on a directory covers what is inside."""
    anchored = "/" in glob.rstrip("/")
    glob = glob.strip("/")
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    prefix = re.escape(base) + ("" if anchored else "(?:.*/)?")
    return re.compile(prefix + "".join(out) + "(?:/.*)?")
