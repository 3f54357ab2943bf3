"""A teacher turn the scaffold rejected (a format error) is kept in the trajectory, marked, and
never trained in an SVG mixture sample; the agent marks it when it answers the format error."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml
from test_mixture_asof import T0, cli, generation, merged, write

from trajlake.lake import Lake

pytestmark = pytest.mark.mixture

REJECTED = {"role": "assistant", "content": "I will run ls", "rejected": "No tool calls found"}


def test_a_rejected_turn_is_in_the_sample_and_not_trained(tmp_path):
    lake = Lake(tmp_path / "lake")
    events = merged(*(generation(i, T0, 0.9, 1.0) for i in range(2)))
    [t1, _] = events["rollouts.t1"]
    messages = json.loads(t1.messages_json)
    error = {"role": "user", "content": "No tool calls found in the response."}
    messages[2:2] = [REJECTED, error]  # before the first good turn
    events["rollouts.t1"][0] = t1.model_copy(update={"messages_json": json.dumps(messages)})
    events["samples"] = [
        s.model_copy(update={"message_tokens": [10] * len(messages)})
        if s.rollout_id == t1.event_id else s
        for s in events["samples"]
    ]  # fmt: skip
    write(lake, events, "batch", T0.date())
    config = tmp_path / "trajlake.yaml"
    where = {"root": str(lake.root), "mixtures": str(tmp_path / "mixtures")}
    config.write_text(yaml.safe_dump({"lake": where}))
    spec = {"name": "mix", "context_budget": 2048, "sources": [
        {"name": "t1", "rollout": "t1", "count": 2}]}  # fmt: skip
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert cli(config, "mixture", "build", str(tmp_path / "spec.yaml"))[0] == 0
    rows = pq.read_table(tmp_path / "mixtures" / "mix" / "data.parquet").to_pylist()
    [sample] = [r for r in rows if r["sample_id"] == t1.event_id]
    assistant = [(m["content"], m["train"]) for m in sample["messages"] if m["role"] == "assistant"]
    assert assistant[0] == ("I will run ls", False)  # kept for context, not trained
    assert all(train for _, train in assistant[1:]) and len(assistant) > 1
    assert "rejected" not in sample["messages"][2]  # samples hold chat-template fields only
