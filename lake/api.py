"""The lake from Python, for notebooks: SQL, Polars frames and built mixtures.

    import trajlake

    lake = trajlake.open("trajlake.yaml")         # or a lake root: trajlake.open("data/lake")
    lake.sql("SELECT teacher_id, avg(recall) FROM trajectories GROUP BY 1").pl()
    trajectories = lake.table("trajectories")     # a Polars LazyFrame over the view
    lake.build_mixture("mixture.yaml")            # as `trajlake mixture build`, then read back
    lake.mixture("demo")                          # a built mixture's data.parquet

Every view `trajlake sql` knows is here (one per topic, deduplicated by event_id, and
views.sql's `trajectories` and `teacher_compare`), over one DuckDB connection that lives as
long as the `LakeSession`: relations and LazyFrames read the lake when they are collected.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
from pydantic import ValidationError

from trajlake.config import Config, load_config
from trajlake.errors import ConfigError, LakeError
from trajlake.lake.objects import is_object_store
from trajlake.lake.views import connect, quote_ident, refresh, schema_hint
from trajlake.yamlfile import describe

if TYPE_CHECKING:
    import polars as pl

    from trajlake.lake.mixture_spec import MixtureSpec


def open_lake(where: str | Path | None = None, overrides: list[str] = ()) -> LakeSession:
    """Open the lake a config file names, or the lake at a root directory (or s3:// URI).

    Args:
        where: a trajlake.yaml; a lake root (as `trajlake --set lake.root=WHERE`); or None for
            ./trajlake.yaml when it exists, else the defaults (as `trajlake` without --config).
        overrides: `key.path=value` config overrides, as `--set` takes them.

    Raises:
        ConfigError: the config file is invalid.
        LakeError: `where` is neither a file nor a directory.
    """
    if where is None:
        return LakeSession(load_config(None, list(overrides)))
    if is_object_store(where) or Path(where).is_dir():
        return LakeSession(load_config(None, [f"lake.root={where}", *overrides]))
    if Path(where).is_file():
        return LakeSession(load_config(where, list(overrides)))
    raise LakeError(
        f"no config file or lake directory at {where}: pass a trajlake.yaml, or the lake's "
        "root directory (lake.root in the config; `trajlake config show` prints it)"
    )


class LakeSession:
    """One lake, its views on one DuckDB connection, and where its mixtures are built."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.root = config.lake.root
        self.mixtures_root = Path(config.lake.mixtures)
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection with the lake's views (made on first use)."""
        if self._con is None:
            self._con = connect(self.root)
        return self._con

    def sql(self, query: str, params: list[Any] | None = None) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation for `query` over the views: `.pl()` for Polars, `.df()` for
        pandas, `.to_arrow_table()` (or `.arrow()`, a batch reader) for Arrow, `.show()`.

        A statement that is not a query (`CREATE TEMP VIEW good AS …`, a view for the rest of
        the session) runs at once and returns None, as in DuckDB.

        Raises:
            LakeError: the statement does not parse or bind (DuckDB's message).
        """
        try:
            return self.con.sql(query, params=params)
        except duckdb.Error as e:
            raise LakeError(f"SQL failed: {schema_hint(e)}") from None

    def views(self) -> list[str]:
        """The names `sql` and `table` know, sorted."""
        rows = self.con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal")
        return sorted(name for (name,) in rows.fetchall())

    def table(self, name: str) -> pl.LazyFrame:
        """The view `name` (a topic table such as `rollouts_t1`, or `trajectories`) as a Polars
        LazyFrame: DuckDB reads only the columns and rows the collected plan needs."""
        if name not in self.views():
            raise LakeError(f"no view {name!r} in the lake: pick one of {', '.join(self.views())}")
        return self.con.sql(f"SELECT * FROM {quote_ident(name)}").pl(lazy=True)

    def mixture_dir(self, name: str) -> Path:
        """The directory of built mixture `name` (data.parquet, data.jsonl, manifest.json)."""
        from trajlake.lake.mixtures import mixture_dir

        return mixture_dir(self.mixtures_root, name)

    def mixture(self, name: str) -> pl.DataFrame:
        """Built mixture `name`'s samples (its data.parquet) as a Polars DataFrame.

        For Hugging Face datasets: `load_dataset("parquet", data_files=str(path))` with
        `path = lake.mixture_dir(name) / "data.parquet"`.
        """
        import polars as pl

        from trajlake.lake.mixtures import DATA_PARQUET

        return pl.read_parquet(self.mixture_dir(name) / DATA_PARQUET)

    def build_mixture(
        self, spec: str | Path | dict[str, Any] | MixtureSpec, force: bool = False
    ) -> pl.DataFrame:
        """Build a mixture as `trajlake mixture build` does, and return its samples.

        Args:
            spec: a spec YAML file, the spec as a dict, or a MixtureSpec
                (`trajlake mixture example` documents every field).
            force: replace a built mixture of the same name.
        """
        from trajlake.lake.mixture_spec import MixtureSpec, load_spec
        from trajlake.lake.mixtures import build

        if isinstance(spec, dict):
            try:
                spec = MixtureSpec.model_validate(spec)
            except ValidationError as e:
                raise ConfigError(describe(e, "mixture spec")) from None
        elif not isinstance(spec, MixtureSpec):
            spec = load_spec(spec)
        build(spec, self.root, self.mixtures_root, self.config.hash(), force)
        return self.mixture(spec.name)

    def refresh(self) -> None:
        """See tables that got their first files since the views were made."""
        if self._con is not None:
            refresh(self._con, self.root)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> LakeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LakeSession(root={str(self.root)!r}, mixtures={str(self.mixtures_root)!r})"
