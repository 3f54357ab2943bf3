-- Derived views over the lake, for `trajlake sql`, mixtures and the plain duckdb CLI.
--
-- They read the per-topic views (tasks, rollouts_t1, rollouts_t2, prs, verdicts, samples, tests), which
-- trajlake creates deduplicated by event_id. From the duckdb CLI, get those first:
--
--   trajlake lake views > lake.sql && duckdb -init lake.sql
--
-- (`trajlake lake views` prints the per-topic views of your lake followed by this file.)

-- One row per rollout (T1 and T2), with its task, PR, verdict, sample measurements and lineage.
--
-- verdict: for a T2, its own verdict; for a T1, the best verdict of the T2s that reproduced it
--   (a T1 is as verified as its best reproduction). Null when there is none yet.
-- sample: the newest measurement of the rollout (a re-run of the filter with another tokenizer
--   adds one). truncation_ratio is the ratio at the first measured budget; the others are in
--   budgets / truncation_ratios (same order).
-- tests: the repository's own tests on the rollout's patch (the tester stage): tests_broken and
--   tests_fixed are null when tests_status is no_tests, timeout or error (unknown, not zero).
CREATE OR REPLACE VIEW trajectories AS
WITH rollouts AS (
  SELECT * FROM rollouts_t1
  UNION ALL BY NAME
  SELECT * FROM rollouts_t2
), verdict AS (
  SELECT v.*, r.t1_id AS for_t1 FROM verdicts v JOIN rollouts_t2 r ON r.event_id = v.t2_id
), t1_verdict AS (
  SELECT * FROM verdict
  QUALIFY row_number() OVER (
    PARTITION BY for_t1 ORDER BY recall DESC NULLS LAST, created_at, event_id) = 1
), sample AS (
  SELECT * FROM samples
  QUALIFY row_number() OVER (PARTITION BY rollout_id ORDER BY created_at DESC, event_id) = 1
), tested AS (
  SELECT * FROM tests
  QUALIFY row_number() OVER (PARTITION BY rollout_id ORDER BY created_at DESC, event_id) = 1
)
SELECT
  r.event_id AS rollout_id, r.rollout, r.attempt, r.created_at,
  -- lineage
  r.repo, r.repo_url, r.commit, r.teacher_id, r.scaffold_id, r.config_hash,
  -- the task
  r.task_id, t.function_file, t.function_name, t.change_type, r.request,
  -- tasks of schema 1 (before languages) were all Python
  CASE WHEN t.event_id IS NOT NULL THEN coalesce(t.language, 'python') END AS language,
  -- the PR (T2: the PR it was given; T1: the PR written from it)
  coalesce(nullif(r.pr_id, ''), p.event_id) AS pr_id, coalesce(pg.pr_text, p.pr_text) AS pr_text,
  -- how the rollout ended
  r.exit_status, r.error, r.self_eval, r.duplicate, r.steps, r.wall_s,
  r.prompt_tokens, r.completion_tokens, r.cost_usd,
  r.patch, r.patch_hash, r.messages_json, r.tools_json,
  -- the verdict
  coalesce(v2.matched, v1.matched) AS matched, coalesce(v2.total, v1.total) AS total,
  coalesce(v2.recall, v1.recall) AS recall, coalesce(v2.label, v1.label) AS label,
  -- the sample measurements
  s.tokenizer, s.message_tokens, s.total_tokens, s.budgets, s.truncation_ratios,
  s.truncation_ratios[1] AS truncation_ratio, s.patch_lines,
  s.tool_tokens_mean, s.tool_tokens_max,
  -- the repository's tests
  ts.tests_status, ts.tests_selected, ts.tests_broken, ts.tests_fixed, ts.tests_flaky,
  ts.touches_tests, ts.reason AS tests_reason
FROM rollouts r
LEFT JOIN tasks t ON t.event_id = r.task_id
LEFT JOIN prs pg ON pg.event_id = r.pr_id
LEFT JOIN (
  SELECT * FROM prs QUALIFY row_number() OVER (PARTITION BY t1_id ORDER BY created_at) = 1
) p ON r.rollout = 't1' AND p.t1_id = r.event_id
LEFT JOIN verdicts v2 ON r.rollout = 't2' AND v2.t2_id = r.event_id
LEFT JOIN t1_verdict v1 ON r.rollout = 't1' AND v1.for_t1 = r.event_id
LEFT JOIN sample s ON s.rollout_id = r.event_id
LEFT JOIN tested ts ON ts.rollout_id = r.event_id;

-- One row per test run: `patched` rows are a rollout's selected tests with its patch (and the
-- baseline status each was compared with); `baseline` rows are the tests at the commit, once per
-- (repository, commit, environment, test). status: passed, failed, error, skipped; missing (did
-- not run with the patch: its file no longer loads); a baseline's none / timeout is a test file
-- with no test in it / one that hung.
CREATE OR REPLACE VIEW test_runs AS
SELECT rollout_id, rollout, 'patched' AS phase, repo, commit, environment_id,
       unnest(test_ids) AS test_id, unnest(statuses) AS status,
       unnest(baseline_statuses) AS baseline_status, unnest(seconds) AS seconds,
       NULL::BOOLEAN AS flaky
  FROM tests
UNION ALL
SELECT NULL, NULL, 'baseline', repo, commit, environment_id, test_id, status, NULL, seconds, flaky
  FROM test_baselines;

-- One row per task and teacher: how each teacher's generation of the task came out (the last
-- rollout-1 attempt, its rollout 2, verdict and sample), for comparing teachers after a replay.
CREATE OR REPLACE VIEW teacher_compare AS
WITH t1 AS (
  SELECT * FROM rollouts_t1
  QUALIFY row_number() OVER (PARTITION BY task_id, teacher_id ORDER BY attempt DESC) = 1
), sample AS (
  SELECT * FROM samples
  QUALIFY row_number() OVER (PARTITION BY rollout_id ORDER BY created_at DESC) = 1
)
SELECT t1.task_id, t1.teacher_id, t1.scaffold_id, t1.attempt AS attempts, t1.exit_status AS t1_exit_status,
       t1.self_eval, v.recall, v.label, s.truncation_ratios[1] AS truncation_ratio,
       s.patch_lines, t1.prompt_tokens + t1.completion_tokens AS t1_tokens,
       r2.exit_status AS t2_exit_status, r2.prompt_tokens + r2.completion_tokens AS t2_tokens
  FROM t1
  LEFT JOIN rollouts_t2 r2 ON r2.t1_id = t1.event_id
  LEFT JOIN verdicts v ON v.t2_id = r2.event_id
  LEFT JOIN sample s ON s.rollout_id = t1.event_id;
