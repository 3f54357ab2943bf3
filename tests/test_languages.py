"""Function sampling in every mainstream language (tree-sitter grammars, languages.yaml).

Each language has a source file written for this test in tests/languages/ (free functions,
methods, constructors, nested and anonymous functions, overloads, decorators/annotations/
attributes, stubs), with the exact (qualified name, first line, last line) list expected of it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_sampler import config_for, sh, write

from trajlake.config import SamplerConfig, load_config
from trajlake.consumers.function_sampler import process, redraw, select, shares
from trajlake.consumers.functions import Function, clear_cache, enumerate_functions, parse_files
from trajlake.consumers.languages import catalog, detect, is_generated
from trajlake.consumers.source_files import linguist_excluded, parse_gitattributes
from trajlake.consumers.syntax import ParseError, functions_in
from trajlake.errors import ConfigError, LakeError
from trajlake.lake import Lake, compact, run_sql
from trajlake.lake.files import partition_dir
from trajlake.lake.mixture_spec import MixtureSpec, load_spec
from trajlake.lake.store import events_table
from trajlake.producers.commits import poll_new_commits
from trajlake.producers.git import tree_blobs
from trajlake.repos import Repo
from trajlake.schemas import TaskEvent

pytestmark = pytest.mark.languages
SOURCES = Path(__file__).with_name("languages")

#: language -> (file, the functions kept [(qualname, start, end)], the trivial ones left out)
EXPECTED = {
    "javascript": (
        "sample.js",
        [
            ("readAll", 3, 6),
            ("Counter.constructor", 9, 11),
            ("Counter.increment", 13, 16),
            ("Counter.from", 22, 26),
            ("shout", 29, 31),
            ("api.fetch", 34, 36),
            ("api.parse", 37, 39),
            ("ids", 42, 45),
        ],
        ["Counter.value"],
    ),
    "typescript": (
        "sample.ts",
        [
            ("add", 3, 5),
            ("pick", 9, 12),
            ("Store.constructor", 18, 20),
            ("Store.size", 22, 25),
            ("Store.put", 27, 29),
            ("Store.handle", 31, 33),
            ("Store.create", 35, 37),
            ("double", 44, 46),
            ("outer", 48, 53),
            ("outer.inner", 49, 51),
        ],
        ["Store.abstractish", "name"],
    ),
    "tsx": (
        "sample.tsx",
        [
            ("Button", 5, 10),
            ("Button.onClick", 6, 8),
            ("Card", 12, 14),
            ("Panel.render", 17, 19),
        ],
        [],
    ),
    "go": (
        "sample.go",
        [
            ("shapes.Circle.Area", 9, 11),
            ("shapes.(*Circle).Grow", 13, 19),
            ("shapes.Map", 21, 27),
            ("shapes.Outer", 29, 34),
            ("shapes.Outer.double", 30, 32),
            ("shapes.Handler", 36, 38),
        ],
        ["shapes.Circle.Radius", "shapes.Todo", "shapes.Empty"],
    ),
    "java": (
        "Sample.java",
        [
            ("Cart.Cart", 9, 11),
            ("Cart.toString", 13, 17),
            ("Cart.total", 19, 25),
            ("Cart.total", 27, 29),
            ("Cart.doubler", 31, 33),
            ("Cart.Item.price", 40, 42),
            ("Cart.Visitor.done", 48, 50),
        ],
        ["Cart.getItems", "Cart.todo"],
    ),
    "kotlin": (
        "sample.kt",
        [
            ("Cart.constructor", 6, 8),
            ("Cart.add", 10, 13),
            ("Cart.total", 15, 17),
            ("Cart.total", 19, 19),
            ("Cart.Companion.empty", 22, 24),
            ("Registry.register", 31, 33),
            ("topLevel", 36, 41),
            ("topLevel.helper", 37, 39),
            ("square", 43, 45),
        ],
        ["Cart.size", "todo"],
    ),
    "rust": (
        "sample.rs",
        [
            ("Stack::new", 8, 10),
            ("Stack::push", 12, 17),
            ("Stack::len", 19, 21),
            ("Stack::fmt", 25, 27),
            ("Shape::describe", 33, 35),
            ("outer", 38, 46),
            ("outer::double", 39, 41),
            ("outer::inner", 42, 44),
            ("util::helper", 49, 52),
        ],
        ["todo", "later"],
    ),
    "c": (
        "sample.c",
        [
            ("square", 8, 10),
            ("distance2", 12, 16),
            ("name_of", 20, 27),
            ("main", 35, 39),
        ],
        ["zero"],
    ),
    "cpp": (
        "sample.cpp",
        [
            ("geo::Shape::name", 10, 12),
            ("geo::Circle::area", 18, 20),
            ("geo::largest", 27, 34),
            ("geo::scale", 40, 45),
            ("geo::scale::twice", 41, 43),
            ("operator==", 47, 49),
            ("answer", 51, 54),
        ],
        ["geo::Circle::Circle", "geo::Circle::radius"],
    ),
    "csharp": (
        "Sample.cs",
        [
            ("Order.Order", 10, 13),
            ("Order.Sum", 15, 21),
            ("Order.Total", 23, 23),
            ("Order.Total", 25, 28),
            ("Order.Process", 35, 43),
            ("Order.Process.Local", 37, 40),
            ("Order.Process.twice", 41, 41),
            ("Point.ToString", 54, 57),
        ],
        ["Order.Todo"],
    ),
    "ruby": (
        "sample.rb",
        [
            ("Shop::Cart#initialize", 5, 7),
            ("Shop::Cart#total", 9, 11),
            ("Shop::Cart.empty", 13, 15),
            ("Shop::Cart#to_json", 21, 23),
            ("Shop.version", 32, 35),
            ("top_level", 38, 43),
            ("top_level.double", 39, 41),
            ("square", 45, 45),
        ],
        ["Shop::Cart#items", "Shop::Cart#todo"],
    ),
    "php": (
        "sample.php",
        [
            ("helper", 7, 10),
            ("Cart::__construct", 16, 19),
            ("Cart::total", 21, 29),
            ("Cart::empty", 31, 34),
            ("Named::name", 54, 57),
            ("$double", 60, 62),
        ],
        ["Cart::items", "Cart::todo"],
    ),
    "swift": (
        "sample.swift",
        [
            ("Point.distance", 7, 10),
            ("Counter.init", 16, 18),
            ("Counter.increment", 20, 24),
            ("Counter.reset", 32, 35),
            ("outer", 42, 47),
            ("outer.inner", 43, 45),
            ("square", 49, 51),
        ],
        ["Counter.value", "todo"],
    ),
    "scala": (
        "sample.scala",
        [
            ("Cart.total", 6, 8),
            ("Cart.sum", 10, 14),
            ("Cart.empty", 20, 22),
            ("Cart.double", 24, 26),
            ("Priced.describe", 32, 34),
            ("topLevel", 37, 42),
            ("topLevel.inner", 38, 40),
        ],
        ["Cart.size", "todo"],
    ),
}


@pytest.mark.parametrize("language", sorted(EXPECTED))
def test_functions_of_each_language_with_qualified_names_and_spans(language):
    name, expected, trivial = EXPECTED[language]
    source = (SOURCES / name).read_bytes()

    found = enumerate_functions(source, f"src/{name}")

    assert [(f.qualname, f.line_start, f.line_end) for f in found] == expected
    assert {f.language for f in found} == {language} and {f.file for f in found} == {f"src/{name}"}
    everything = enumerate_functions(source, f"src/{name}", skip_trivial=False)
    kept = {(f.qualname, f.line_start) for f in found}
    assert [f.qualname for f in everything if (f.qualname, f.line_start) not in kept] == trivial
    ids = [f.id_name for f in found]
    assert len(set(ids)) == len(ids)  # overloads: a later definition is name@line


def test_overloads_get_distinct_ids_and_signatures_are_not_functions():
    found = enumerate_functions((SOURCES / "Sample.java").read_bytes(), "Sample.java")
    assert [f.id_name for f in found if f.qualname == "Cart.total"] == [
        "Cart.total",
        "Cart.total@27",
    ]
    ts = enumerate_functions((SOURCES / "sample.ts").read_bytes(), "sample.ts")
    assert [(f.qualname, f.line_start) for f in ts if f.qualname == "pick"] == [("pick", 9)]


@pytest.mark.parametrize("language", sorted(set(catalog().languages) - {"python"}))
def test_every_language_has_a_grammar_and_its_node_types_exist(language):
    lang = catalog().languages[language]
    assert functions_in(b"", lang) == []  # the query of its node types compiles
    assert lang.title and lang.extensions and lang.comment


def test_parser_processes_give_what_this_process_gives_errors_included():
    items = [
        (f"{i}/{name}", EXPECTED_LANGUAGE[name], f"{i}{name}", (SOURCES / name).read_bytes())
        for name in sorted(EXPECTED_LANGUAGE)
        for i in range(3)
    ] + [("bad.go", "go", "b1", b"package a\nfunc ( {\n"), ("bad.py", "python", "b2", b"def (:\n")]

    clear_cache()
    here = parse_files(items, skip_trivial=True, workers=1)
    clear_cache()
    pooled = parse_files(items, skip_trivial=True, workers=2)

    assert pooled == here
    moved = [(f"moved/{path}", language, sha, b"") for path, language, sha, _ in items]
    again = parse_files(moved, skip_trivial=True, workers=1)  # known blobs: not read again
    assert [[f.file for f in r] if isinstance(r, list) else r for r in again] == [
        [f"moved/{f.file}" for f in r] if isinstance(r, list) else r for r in here
    ]
    assert [r for r in here if isinstance(r, str)] == [
        "ParseError: Go syntax error near line 2",
        "SyntaxError: invalid syntax (bad.py, line 1)",
    ]


EXPECTED_LANGUAGE = {name: language for language, (name, _, _) in EXPECTED.items()}


def test_a_syntax_error_raises_parse_error_naming_the_line():
    with pytest.raises(ParseError, match="Go syntax error near line 2"):
        functions_in(b"package a\nfunc f( {\n}\n", catalog().languages["go"])


def test_language_detection_and_headers_of_a_cpp_repository():
    paths = ["a.go", "b/c.ts", "d.tsx", "e.h", "f.c", "g.rb", "README.md", "Makefile"]
    assert detect(paths) == {
        "a.go": "go",
        "b/c.ts": "typescript",
        "d.tsx": "tsx",
        "e.h": "c",
        "f.c": "c",
        "g.rb": "ruby",
    }
    assert detect(["x.h", "y.cpp"])["x.h"] == "cpp"  # a .h in a C++ repository is C++


def test_generated_markers_in_each_comment_syntax():
    go, ts = catalog().languages["go"], catalog().languages["typescript"]
    assert is_generated("api.go", b"// Code generated by protoc-gen-go. DO NOT EDIT.\n", go)
    assert is_generated("x/api.pb.go", b"package x\n", go)
    assert is_generated("a.ts", b"/* eslint-disable */\n// @generated by tool\n", ts)
    assert not is_generated("a.ts", b"const s = 'generated by users';\n", ts)
    assert not is_generated("a.go", b"package a\n" * 10 + b"// Code generated later\n", go)


def test_gitattributes_patterns():
    rules = parse_gitattributes(
        "# comment\n*.gen.ts linguist-generated\ndocs/** linguist-vendored=true\n"
        "docs/keep.ts -linguist-vendored\nweb/api/*.ts linguist-generated=false\n",
    )
    excluded = {p for p in ["a/b.gen.ts", "docs/x/y.ts", "docs/keep.ts", "c.ts"] if _hit(rules, p)}
    assert excluded == {"a/b.gen.ts", "docs/x/y.ts"}
    nested = parse_gitattributes("*.ts linguist-generated\n", base="web/")
    assert _hit(nested, "web/a/b.ts") and not _hit(nested, "srv/b.ts")


def _hit(rules, path):
    state = False
    for pattern, value in rules:
        if pattern.fullmatch(path):
            state = value
    return state


def test_fair_shares_follow_function_counts_unless_weights_say_otherwise():
    assert shares(10, {"go": 60, "python": 30, "typescript": 10}, {}) == {
        "go": 6,
        "python": 3,
        "typescript": 1,
    }
    assert shares(4, {"go": 1, "python": 30}, {}) == {"python": 4}  # in proportion
    assert shares(6, {"go": 50, "python": 50}, {"go": 2, "python": 1}) == {"go": 4, "python": 2}
    assert shares(6, {"go": 2, "python": 50}, {"go": 5, "python": 1}) == {"go": 2, "python": 4}
    assert shares(6, {"go": 50, "ruby": 50}, {"go": 1}) == {"go": 6}  # ruby left out: 0
    assert shares(100, {"go": 3, "c": 2}, {}) == {"go": 3, "c": 2}


def test_n_mode_draws_from_every_language():
    functions = [
        Function(f"{k}{i}", f"f{i}", 1, 9, f"f{i}", k) for k in ("go", "ts") for i in range(40)
    ]
    functions += [Function(f"py{i}", f"f{i}", 1, 9, f"f{i}", "python") for i in range(20)]
    picked = select(functions, "10", seed=0, commit="c")
    assert {k: sum(f.language == k for f in picked) for k in ("go", "ts", "python")} == {
        "go": 4,
        "ts": 4,
        "python": 2,
    }
    assert picked == select(functions, "10", seed=0, commit="c")


# -- at a real commit: what is skipped, what is counted ------------------------------------

REPO_FILES = {
    "go/shapes.go": (SOURCES / "sample.go").read_text(),
    "go/shapes_test.go": "package shapes\n\nfunc TestArea(t *testing.T) {\n\tt.Log(1 + 1)\n}\n",
    "go/api.pb.go": "package shapes\n\nfunc Marshal() int {\n\treturn 1 + 1\n}\n",
    "go/gen.go": "// Code generated by stringer. DO NOT EDIT.\npackage shapes\n\nfunc G() int {\n"
    "\treturn 1 + 2\n}\n",
    "go/broken.go": "package shapes\n\nfunc Broken( {\n}\n",
    "vendor/github.com/x/y.go": "package y\n\nfunc V() int {\n\treturn 1 + 3\n}\n",
    "web/src/store.ts": (SOURCES / "sample.ts").read_text(),
    "web/src/store.test.ts": "test('x', () => {\n  expect(1 + 1).toBe(2);\n});\nfunction t() {\n"
    "  return 1 + 1;\n}\n",
    "web/src/api.gen.ts": "export function gen() {\n  return 1 + 1;\n}\n",
    "web/node_modules/lib/index.js": "function lib() {\n  return 1 + 1;\n}\n",
    "web/dist/app.min.js": "function m(){return 1+1}\n",
    "web/src/broken.ts": "export function oops( {\n",
    "web/src/broken2.ts": "export const = 1;\n",
    "app/core.py": "def mean(xs):\n    total = sum(xs)\n    return total / len(xs)\n",
    "app/bad.py": "def oops(:\n",
    "Gemfile.lock": "GEM\n",
    "package-lock.json": "{}\n",
    ".gitattributes": "*.gen.ts linguist-generated\n",
}


@pytest.fixture
def polyglot(tmp_path: Path) -> tuple[Path, list]:
    path = tmp_path / "poly"
    path.mkdir()
    sh(path, "init", "-q", "-b", "main")
    write(path, REPO_FILES)
    sh(path, "add", "-A")
    sh(path, "commit", "-q", "-m", "polyglot")
    return path, poll_new_commits(Repo("poly", str(path), "main", backfill=1), path, "h")


def test_tests_generated_and_vendored_files_skipped_broken_ones_counted(tmp_path, polyglot):
    repo, events = polyglot
    config = config_for(tmp_path)

    tasks = process(config, events[0])

    files = {t.function_file for t in tasks}
    assert files == {"go/shapes.go", "web/src/store.ts", "app/core.py"}
    by_language = {t.language: t.unparsed_files for t in tasks}
    assert by_language == {"go": 1, "typescript": 2, "python": 1}
    go = [(t.function_name, t.line_start, t.line_end) for t in tasks if t.language == "go"]
    assert go == EXPECTED["go"][1]
    store = [t for t in tasks if t.function_name == "Store.put"][0]
    assert "is the TypeScript function at lines 27-29 of `web/src/store.ts`." in store.request
    assert linguist_excluded(repo, tree_blobs(repo, events[0].commit)) == {"web/src/api.gen.ts"}


def test_changed_mode_takes_the_functions_a_commit_touched_in_every_language(tmp_path, polyglot):
    repo, _ = polyglot
    go = REPO_FILES["go/shapes.go"].replace("c.r += by", "c.r += by * 1")
    ts = REPO_FILES["web/src/store.ts"].replace("this.items.push(item);", "this.items.push(item!);")
    write(repo, {"go/shapes.go": go, "web/src/store.ts": ts, "web/src/new.tsx": SOURCE_TSX})
    sh(repo, "add", "-A")
    sh(repo, "commit", "-q", "-m", "second", when=2)
    events = poll_new_commits(Repo("poly", str(repo), "main", backfill=2), repo, "h")

    tasks = process(config_for(tmp_path, mode="changed"), events[-1])

    assert {(t.language, t.function_name) for t in tasks} == {
        ("go", "shapes.(*Circle).Grow"),
        ("typescript", "Store.put"),
        *{("tsx", name) for name, _, _ in EXPECTED["tsx"][1]},  # a new file: all of it
    }


SOURCE_TSX = (SOURCES / "sample.tsx").read_text()


def test_a_redrawn_task_keeps_its_language_and_lines(tmp_path, polyglot):
    _, events = polyglot
    tasks = process(config_for(tmp_path, languages=["go"]), events[0])
    grow = next(t for t in tasks if t.function_name == "shapes.(*Circle).Grow")

    again = redraw(grow, 2)

    assert (again.language, again.line_start, again.line_end) == ("go", 13, 19)
    assert again.request != grow.request and again.request.endswith(
        "`shapes.(*Circle).Grow` is the Go function at lines 13-19 of `go/shapes.go`."
    )
    assert redraw(again, 1).request == grow.request


def test_sampler_languages_limits_and_unknown_names_say_what_is_known(tmp_path, polyglot):
    _, events = polyglot
    only_go = process(config_for(tmp_path, languages=["go", "python"]), events[0])
    assert {t.language for t in only_go} == {"go", "python"}
    with pytest.raises(ConfigError, match="sampler.languages.*unknown language.*cobol.*known: py"):
        load_config(None, ["sampler.languages=[cobol]"])
    with pytest.raises(ConfigError, match="language_weights.*unknown language.*rust2"):
        load_config(None, ["sampler.language_weights={rust2: 1}"])
    aliased = load_config(
        None, ["sampler.languages=[ts, golang]", "sampler.language_weights={ts: 2}"]
    )
    assert aliased.sampler.languages == ["typescript", "go"]
    assert aliased.sampler.language_weights == {"typescript": 2.0}
    skipped = process(config_for(tmp_path, skip=["web/*"]), events[0])
    assert {t.language for t in skipped} == {"go", "python"}


def test_n_mode_at_a_polyglot_commit_is_fair_and_weights_change_it(tmp_path, polyglot):
    _, events = polyglot
    tasks = process(config_for(tmp_path, mode="5"), events[0])
    counts = {"go": 6, "typescript": 10, "python": 1}  # functions: 5 draws, 1.8 / 2.9 / 0.3
    assert {k: sum(t.language == k for t in tasks) for k in counts} == {
        "go": 2,
        "typescript": 3,
        "python": 0,
    }
    weighted = process(
        config_for(tmp_path, mode="5", language_weights={"python": 1, "go": 1}), events[0]
    )
    assert sorted(t.language for t in weighted) == ["go", "go", "go", "go", "python"]
    assert SamplerConfig().languages == []


# -- tasks know their language in the lake --------------------------------------------------


def test_a_lake_of_schema_1_tasks_reads_as_python_after_compaction(tmp_path):
    lake = Lake(tmp_path)
    old = events_table("tasks", [_task("old", "python")]).drop_columns(["language"])
    folder = partition_dir(tmp_path, "tasks", "proj", dt.date(2024, 5, 1))
    folder.mkdir(parents=True)
    pq.write_table(
        old.set_column(3, "schema_version", pa.array([1], pa.int64())), folder / "v1.parquet"
    )
    lake.write("tasks", [_task("new", "go")], "v2", date=dt.date(2024, 5, 2))
    with pytest.raises(LakeError, match="run `trajlake lake compact`"):
        run_sql(tmp_path, "SELECT language FROM tasks", "csv")

    compact(tmp_path)

    rows = {(t.event_id, t.language, t.schema_version) for t in lake.read_events("tasks")}
    assert rows == {("old", "python", 1), ("new", "go", 2)}


def test_mixture_sources_select_languages_by_key_or_alias(tmp_path):
    source = {"name": "s", "count": 1, "languages": ["go", "ts", "C#"]}
    spec = MixtureSpec.model_validate({"name": "m", "sources": [source]})
    assert spec.sources[0].languages == ["go", "typescript", "csharp"]
    assert "language IN ('go', 'typescript', 'csharp')" in spec.sources[0].condition()
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nsources:\n  - {name: s, count: 1, languages: [cobol]}\n")
    with pytest.raises(ConfigError, match="unknown language.*cobol.*known: python"):
        load_spec(path)
    dagger = {"name": "d", "count": 1, "kind": "dagger", "languages": ["go"]}
    with pytest.raises(ValueError, match="cannot take languages"):
        MixtureSpec.model_validate({"name": "m", "sources": [dagger]})


def _task(event_id: str, language: str) -> TaskEvent:
    return TaskEvent(
        event_id=event_id,
        stage="function_sampler",
        repo="proj",
        function_file="a.go" if language == "go" else "a.py",
        function_name="f",
        line_start=1,
        line_end=3,
        change_type="naming",
        request="r",
        language=language,
    )
