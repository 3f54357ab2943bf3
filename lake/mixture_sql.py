"""The one DuckDB statement a mixture spec compiles to (see `mixture_spec` for the spec).

Selection reads only metadata columns; the text of the chosen rows is read once, at the end,
and rendered there (see `mixture_sql`): messages as chat-template input with a per-message
`train` flag, cut by ordered truncation at the context budget back to the last assistant turn.
Sources of `kind: dagger` are rendered apart, in `dagger_mixture`.
"""

from __future__ import annotations

from trajlake.lake.mixture_spec import MixtureSpec
from trajlake.lake.views import quote_literal

#: How rollout messages are parsed from messages_json: the fields chat templates read.
MESSAGE_TYPE = (
    '[{"role": "VARCHAR", "content": "VARCHAR", "reasoning_content": "VARCHAR", '
    '"tool_calls": [{"id": "VARCHAR", "type": "VARCHAR", '
    '"function": {"name": "VARCHAR", "arguments": "VARCHAR"}}], "tool_call_id": "VARCHAR", '
    '"rejected": "VARCHAR"}]'
)
#: A message as samples hold it: the chat-template fields and whether it trains. An assistant
#: turn the scaffold rejected (`rejected`, a format error) does not.
SAMPLE_MESSAGE = (
    "lambda x: {'role': x.role, 'content': x.content, 'reasoning_content': x.reasoning_content, "
    "'tool_calls': x.tool_calls, 'tool_call_id': x.tool_call_id, "
    "'train': x.role = 'assistant' AND x.rejected IS NULL}"
)


#: Columns of `trajectories` a mixture row is made from (read for the chosen rows only).
READ_COLUMNS = tuple(
    f"t.{c}"
    for c in (
        "rollout_id",
        "rollout",
        "request",
        "repo",
        '"commit"',
        "teacher_id",
        "scaffold_id",
        "config_hash",
        "task_id",
        "pr_id",
        "exit_status",
        "recall",
        "matched",
        "total",
        "label",
        "message_tokens",
        "patch_lines",
        "tool_tokens_max",
        "tokenizer",
        "patch",
        "tools_json",
    )
)


def selection_sql(spec: MixtureSpec, source: str = "trajectories") -> str:
    """SELECT of the chosen rows (metadata only), with `source`, `target` and `position`."""
    budget = spec.context_budget
    ratio = f"truncation_ratios[list_position(budgets, {budget})]"
    svg = [s for s in spec.sources if s.kind == "svg"]  # dagger ones: lake/dagger_mixture.py
    assign = " ".join(f"WHEN {s.condition()} THEN {quote_literal(s.name)}" for s in svg)
    assign = assign or "WHEN false THEN ''"  # typed VARCHAR, as the source column is
    target = (
        f"repo IN ({', '.join(map(quote_literal, spec.specialization.repos))})"
        if spec.specialization
        else "false"
    )
    tiebreak = f"md5('{spec.seed}:' || rollout_id)"
    order = f"ratio DESC, {tiebreak}" if spec.order == "truncation" else tiebreak
    quotas = " ".join(
        f"WHEN source = {quote_literal(name)} AND target = {str(is_target).lower()} THEN {n}"
        for (name, is_target), n in spec.quotas().items()
    )
    dedup = (
        "QUALIFY row_number() OVER (PARTITION BY repo, rollout, "
        f"coalesce(nullif(patch_hash, ''), rollout_id) ORDER BY {order}) = 1"
        if spec.dedup_by_patch
        else ""
    )
    return f"""
SELECT rollout_id, source, target, row_number() OVER (ORDER BY {order}) AS position
FROM (
  SELECT *, row_number() OVER (PARTITION BY source, target ORDER BY {order}) AS rank
  FROM (
    SELECT * FROM (
      SELECT rollout_id, repo, rollout, patch_hash, ratio, CASE {assign} END AS source,
             {target} AS target
      FROM (SELECT *, {ratio} AS ratio FROM {source})
      WHERE ratio > 0
    )
    WHERE source IS NOT NULL
    {dedup}
  )
)
WHERE rank <= CASE {quotas} ELSE 0 END"""


def mixture_sql(spec: MixtureSpec, source: str = "trajectories") -> str:
    """The whole build: selection, then the chosen rows read and rendered for training.

    `kept` messages survive ordered truncation at the context budget: the share the filter
    measured (kept / all, so kept = round(ratio * all)), cut back to the last trained
    assistant turn so that every sample ends on one. Joins build on their right side as written (see
    mixtures.PLAN_AS_WRITTEN): `chosen`, never the text.
    """
    budget = spec.context_budget
    trains = "list_transform(m, lambda x: x.role = 'assistant' AND x.rejected IS NULL)"
    last_assistant = f"len(m) + 1 - list_position(list_reverse({trains}), true)"
    return f"""
WITH chosen AS MATERIALIZED ({selection_sql(spec, source)}
), picked AS (
  SELECT {", ".join(READ_COLUMNS)}, chosen.source, chosen.target, chosen.position,
         t.truncation_ratios[list_position(t.budgets, {budget})] AS ratio,
         from_json(t.messages_json, '{MESSAGE_TYPE}') AS m
  FROM {source} t JOIN chosen USING (rollout_id)
), cut AS (
  SELECT *, least(CAST(round(ratio * len(m)) AS BIGINT), {last_assistant}) AS kept FROM picked
)
SELECT
  rollout_id AS sample_id, source,
  list_transform(list_slice(m, 1, kept), {SAMPLE_MESSAGE}) AS messages,
  tools_json AS tools,
  rollout, request, repo, "commit", teacher_id, scaffold_id, config_hash, task_id, pr_id,
  target AS target_repo, exit_status, recall, matched, total, label,
  ratio AS truncation_ratio, kept AS kept_messages, len(m) AS messages_total,
  CAST(list_sum(list_slice(message_tokens, 1, kept)) AS BIGINT) AS tokens,
  patch_lines, tool_tokens_max, tokenizer, patch
FROM cut
ORDER BY position"""
