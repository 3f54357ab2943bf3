"""Run as: python bench/filter.py [--trajectories N] [--naive N] [--repeat R] [--budgets B,...]

Trajectories/s for the filter's token statistics and truncation ratios, three ways, on the same
synthetic trajectories in the same run, with a byte-level BPE (vocab ~8k) trained by this script
on text generated like the trajectories:

- batched (the stage): `consumers.filter.measure` — every message of a trajectory rendered and
  tokenized in one `encode_batch_fast` call; per-message counts and their prefix sums answer
  every budget.
- loop (baseline 1): the same rendering, one `Tokenizer.encode` call per message, counts then
  reused for every budget. Isolates the gain of batching.
- naive (baseline 2): per-message `encode` for the counts, and for each budget the conversation
  re-tokenized as growing prefixes (messages 0..k joined by newlines, k = 0, 1, …) until a prefix
  crosses the budget, then cut back to the last assistant turn. Quadratic; run on the first
  `--naive` trajectories only, and compared with the batched rate on those same trajectories.

Timed: rendering, tokenization, ratios and tool stats per trajectory; not JSON parsing or
tokenizer loading; batched and loop alternate, best of `--repeat` rounds. Batched and loop
must give identical results (checked); naive counts tokens of joined prefixes, where merges
across message boundaries may move a cut, so its agreement is printed, not required.
`encode_batch_fast` uses the tokenizers thread pool (rayon): the batched rate grows with cores,
so the core count is printed.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from argparse import ArgumentParser, Namespace
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from trajlake.consumers.filter import measure, render_message, truncation_ratios
from trajlake.tokenizer import HFTokenCounter, load_tokenizer, train_tiny_tokenizer

Messages = list[dict[str, Any]]
Result = tuple[list[int], list[float], float, int]  # counts, ratios, tool mean, tool max

# fmt: off
WORDS = (
    "the", "a", "to", "of", "and", "in", "is", "it", "that", "for", "this", "we", "need", "check",
    "file", "function", "value", "error", "return", "parser", "cache", "retry", "config", "request",
    "response", "handle", "input", "output", "test", "assert", "path", "line", "update", "fix",
    "call", "args", "self", "None", "True", "False", "import", "from", "class", "def", "raise",
    "except", "try", "with",
)
# fmt: on
SYMBOLS = ("(", ")", ":", "=", ",", ".", "[", "]", "{", "}", "->", "+=", "==", '"', "#")


def _identifier(rng: random.Random) -> str:
    """snake_case from common words, sometimes with a made-up one (project-specific names)."""
    parts = rng.choices(WORDS, k=rng.randint(1, 3))
    if rng.random() < 0.3:
        parts.append("".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in "abc"))
    return "_".join(parts)


def _text(rng: random.Random, words: int) -> str:
    """Prose mixed with code: identifiers, symbols, numbers, newlines and indentation."""
    out = []
    for _ in range(words):
        r = rng.random()
        if r < 0.55:
            out.append(rng.choice(WORDS))
        elif r < 0.75:
            out.append(_identifier(rng))
        elif r < 0.9:
            out.append(rng.choice(SYMBOLS))
        elif r < 0.95:
            out.append(str(rng.randint(0, 5000)))
        else:
            out.append("\n" + " " * rng.choice((0, 4, 8)))
    return " ".join(out)


def _length(rng: random.Random, median: float, cap: int) -> int:
    return max(1, min(cap, int(rng.lognormvariate(0, 0.9) * median)))


def trajectory(rng: random.Random) -> Messages:
    """System and user prompts, then assistant turns (reasoning, text, one tool call) each
    followed by a tool result; 20-60 messages."""
    messages: Messages = [
        {"role": "system", "content": _text(rng, rng.randint(300, 700))},
        {"role": "user", "content": _text(rng, rng.randint(60, 300))},
    ]
    for step in range(rng.randint(9, 29)):
        call = {"name": rng.choice(("bash", "str_replace_editor")), "arguments": ""}
        call["arguments"] = '{"command": "' + _text(rng, _length(rng, 40, 600)) + '"}'
        messages.append(
            {
                "role": "assistant",
                "reasoning_content": _text(rng, _length(rng, 120, 1500)),
                "content": _text(rng, _length(rng, 25, 300)),
                "tool_calls": [{"id": f"c{step}", "type": "function", "function": call}],
            }
        )
        content = _text(rng, _length(rng, 180, 4000))
        messages.append({"role": "tool", "tool_call_id": f"c{step}", "content": content})
    return messages


def _tool_stats(counts: list[int], roles: list[str]) -> tuple[float, int]:
    tool = [c for c, r in zip(counts, roles, strict=True) if r == "tool"]
    return (sum(tool) / len(tool) if tool else 0.0), max(tool, default=0)


def batched(counter: HFTokenCounter, budgets: list[int]) -> Callable[[Messages], Result]:
    def run(messages: Messages) -> Result:
        m = measure(messages, counter, budgets)
        return m.message_tokens, m.truncation_ratios, m.tool_tokens_mean, m.tool_tokens_max

    return run


def loop(tokenizer: Tokenizer, budgets: list[int]) -> Callable[[Messages], Result]:
    def run(messages: Messages) -> Result:
        roles = [m["role"] for m in messages]
        counts = [
            len(tokenizer.encode(render_message(m), add_special_tokens=False).ids) for m in messages
        ]
        return counts, truncation_ratios(counts, roles, budgets), *_tool_stats(counts, roles)

    return run


def naive(tokenizer: Tokenizer, budgets: list[int]) -> Callable[[Messages], Result]:
    def ratio(texts: list[str], roles: list[str], budget: int) -> float:
        kept = 0
        for k in range(len(texts)):
            prefix = "\n".join(texts[: k + 1])
            if len(tokenizer.encode(prefix, add_special_tokens=False).ids) > budget:
                return kept / len(texts)
            if roles[k] == "assistant":
                kept = k + 1
        return 1.0

    def run(messages: Messages) -> Result:
        roles = [m["role"] for m in messages]
        texts = [render_message(m) for m in messages]
        counts = [len(tokenizer.encode(t, add_special_tokens=False).ids) for t in texts]
        ratios = [ratio(texts, roles, b) for b in budgets]
        return counts, ratios, *_tool_stats(counts, roles)

    return run


def timed(
    fns: list[Callable[[Messages], Result]], data: list[Messages], repeat: int
) -> list[tuple[float, list[Result]]]:
    """Best-of-`repeat` seconds and the results of each function, runs interleaved (noise)."""
    best = [(float("inf"), [])] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            results = [fn(messages) for messages in data]
            best[i] = min(best[i], (time.perf_counter() - start, results), key=lambda b: b[0])
    return best


def _args(argv: list[str]) -> Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=500)
    parser.add_argument("--naive", type=int, default=20, help="trajectories for the naive run")
    parser.add_argument("--repeat", type=int, default=2, help="batched and loop: best of R")
    parser.add_argument("--budgets", default="8192,16384,32768")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _tokenizer(data: list[Messages], vocab: int, workdir: Path) -> Tokenizer:
    texts = (render_message(m) for messages in data[:100] for m in messages)
    return load_tokenizer(train_tiny_tokenizer(texts, workdir / "bench-tok", vocab))


def main(argv: list[str]) -> None:
    args = _args(argv)
    budgets = [int(b) for b in args.budgets.split(",")]
    rng = random.Random(args.seed)
    data = [trajectory(rng) for _ in range(args.trajectories)]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = _tokenizer(data, args.vocab, Path(tmp))
    counter = HFTokenCounter(tokenizer, "bench")
    batched(counter, budgets)(data[0])  # warm the thread pool
    n_msgs = sum(len(t) for t in data)
    sample = batched(counter, [10**9])(data[0])
    print(
        f"{len(data)} trajectories, {n_msgs / len(data):.0f} messages and "
        f"~{sum(sample[0]):,} tokens in the first; budgets {budgets}; "
        f"vocab {tokenizer.get_vocab_size()}; {os.cpu_count()} cores"
    )
    fast, slow = batched(counter, budgets), loop(tokenizer, budgets)
    (t_batch, r_batch), (t_loop, r_loop) = timed([fast, slow], data, args.repeat)
    if r_batch != r_loop:
        sys.exit("batched and loop results differ: the benchmark compares different work")
    subset = data[: args.naive]
    [(t_naive, r_naive)] = timed([naive(tokenizer, budgets)], subset, 1)  # slow: once
    [(t_sub, r_sub)] = timed([fast], subset, 3)
    same = sum(a[1] == b[1] for a, b in zip(r_sub, r_naive, strict=True)) / max(1, len(subset))
    print(f"{'approach':<10} {'traj':>6} {'traj/s':>10}")
    for name, n, secs in (
        ("batched", len(data), t_batch),
        ("loop", len(data), t_loop),
        ("batched", len(subset), t_sub),
        ("naive", len(subset), t_naive),
    ):
        print(f"{name:<10} {n:>6} {n / secs:>10.1f}")
    print(f"batched / loop:  {t_loop / t_batch:.2f}x  ({len(data)} trajectories, same results)")
    print(
        f"batched / naive: {t_naive / t_sub:.2f}x  ({len(subset)} trajectories; "
        f"naive ratios equal on {same:.0%})"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
