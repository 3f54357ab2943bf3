"""A real pretrained student: Qwen2.5-Coder-0.5B-Instruct converted from its GGUF into a Hugging
Face directory, fine-tuned for two steps on the demo's mixture by `trajlake train` on the CPU.

Qwen's chat template has no `{% generation %}` markers, so the mask comes from rendering each
conversation's prefixes (training/chat.py); these tests hold it to the assistant turns exactly.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

import trajlake
from trajlake.training.chat import IGNORE_INDEX, template_inputs, tokenize_chat
from trajlake.training.data import read_mixture
from trajlake.training.metrics import read_metrics

pytestmark = pytest.mark.realmodel

CONFIG = Path(__file__).parents[1] / "training" / "configs" / "qwen-0.5b-cpu.yaml"


@pytest.fixture(scope="module")
def mixture(demo_copy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's mixture spec cut to one T2 sample, built from a copy of the demo's lake."""
    demo = demo_copy(tmp_path_factory.mktemp("student"))
    spec = yaml.safe_load((demo.workdir / "mixture.yaml").read_text())
    spec["name"] = "one"
    spec["sources"] = [spec["sources"][0] | {"count": 1}]
    with trajlake.open(demo.config_file) as lake:
        lake.build_mixture(spec)
        return lake.mixture_dir("one")


@pytest.fixture(scope="module")
def run(mixture: Path, qwen_student: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "qwen"
    command = [sys.executable, "-m", "trajlake.cli", "train", "--config", str(CONFIG)]
    command += ["--nproc-per-node", "1", f"output_dir={out}", f"mixture={mixture}"]
    command += [f"model={qwen_student}", "epochs=2"]  # one sample, seen twice: two steps
    env = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count() or 1)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def test_the_mask_covers_exactly_the_assistant_turns(demo_copy, qwen_student, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(qwen_student)
    # no {% generation %} markers: the prefix-rendering path is the one that runs
    assert not re.search(r"\{%-?\s*generation\s*-?%\}", tokenizer.chat_template)
    demo = demo_copy(tmp_path)
    with trajlake.open(demo.config_file) as lake:
        rows = lake.build_mixture(
            yaml.safe_load((demo.workdir / "mixture.yaml").read_text())
        ).to_dicts()[:3]
    for row in rows:
        messages = list(row["messages"])
        chat = tokenize_chat(tokenizer, messages, row["tools"])
        assistants = [m for m in messages if m["role"] == "assistant"]
        spans = _spans(chat.labels)
        assert len(spans) == len(assistants) == len(chat.turn_ends) > 0
        inputs, tools = template_inputs(messages, row["tools"])
        for (start, end), message in zip(spans, assistants, strict=True):
            trained = tokenizer.decode(chat.input_ids[start:end])
            before = tokenizer.decode(chat.input_ids[:start])
            assert before.endswith("<|im_start|>assistant\n")  # the header is not trained
            assert trained.endswith("<|im_end|>") and "<|im_start|>" not in trained
            assert (message.get("content") or "").strip() in trained
            for call in message.get("tool_calls") or []:
                assert f'"name": "{call["function"]["name"]}"' in trained
        rendered = tokenizer.apply_chat_template(inputs, tools=tools or None, tokenize=False)
        assert tokenizer.decode(chat.input_ids) == rendered


def _spans(labels: list[int]) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, label in enumerate([*labels, IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            spans.append((start, i))
            start = None
    return spans


def test_a_pretrained_student_starts_low_and_its_loss_falls(run, qwen_student):
    losses = [r["loss"] for r in read_metrics(run / "metrics.jsonl")]
    vocab = len(AutoTokenizer.from_pretrained(qwen_student))
    assert len(losses) == 2
    assert losses[0] < 0.5 * math.log(vocab)  # pretrained: a random model starts at ~log(vocab)
    assert losses[1] < losses[0]  # the same sample again, after one step on it


def test_the_fine_tuned_student_loads_and_generates(run, mixture):
    model = AutoModelForCausalLM.from_pretrained(run / "model")
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    assert type(model).__name__ == "Qwen2ForCausalLM"
    rows, _ = read_mixture(mixture)
    messages, tools = template_inputs(list(rows[0]["messages"])[:2], rows[0]["tools"])
    prompt = tokenizer.apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    new = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert out.shape[1] > prompt["input_ids"].shape[1] and new.strip()
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
