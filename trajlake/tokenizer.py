"""The student tokenizer: load one, train a tiny one, and count tokens with it.

Counting goes through the `TokenCounter` protocol so that the filter runs with or without a
real tokenizer: `open_counter("")` gives the regex fallback, any other path a Hugging Face
`tokenizers` tokenizer. Nothing is downloaded; a tokenizer is a local directory or file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from trajlake.errors import TrajlakeError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
EOS_TOKEN = "<|endoftext|>"
#: special tokens of trained tokenizers: end of text, then the ChatML turn markers.
SPECIAL_TOKENS = (EOS_TOKEN, "<|im_start|>", "<|im_end|>")
REGEX_TOKENIZER_ID = "regex-v1"
#: Qwen3-style ChatML with tools, for trained tokenizers. Tools are listed in the system turn,
#: reasoning goes in <think>, calls in <tool_call>, results in <tool_response> inside a user turn.
#: `{% generation %}` marks what the assistant writes (its <|im_end|> included), so
#: `apply_chat_template(..., return_assistant_tokens_mask=True)` finds the trained tokens.
CHAT_TEMPLATE = r"""{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\n\n' }}{%- endif %}
{{- '# Tools\n\nYou may call one or more functions. Their signatures, within <tools></tools>:'
    '\n<tools>' }}
{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}
{{- '\n</tools>\n\nFor each call, return a JSON object with the function name and arguments '
    'within <tool_call></tool_call> tags:\n<tool_call>\n{"name": <function-name>, '
    '"arguments": <args-json-object>}\n</tool_call><|im_end|>\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + messages[0].content + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'system' and not loop.first) %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant\n' }}
{%- generation %}
{%- if message.reasoning_content %}
{{- '<think>\n' + message.reasoning_content.strip('\n') + '\n</think>\n\n' }}
{%- endif %}
{{- message.content or '' }}
{%- for call in message.tool_calls or [] %}
{%- set call = call.function or call %}
{%- if message.content or not loop.first %}{{- '\n' }}{%- endif %}
{{- '<tool_call>\n{"name": "' + call.name + '", "arguments": ' }}
{{- call.arguments if call.arguments is string else call.arguments | tojson }}
{{- '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>' }}
{%- endgeneration %}
{{- '\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
{{- '<|im_start|>user' }}
{%- endif %}
{{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"""
_REGEX = re.compile(r"\w+|[^\w\s]")


class TokenizerError(TrajlakeError):
    """A tokenizer cannot be loaded or trained as asked."""


class TokenCounter(Protocol):
    """Counts tokens of many texts in one call. `id` names the tokenizer in every sample."""

    id: str

    def count(self, texts: list[str]) -> list[int]: ...


class HFTokenCounter:
    """Counts with a `tokenizers.Tokenizer`: one batched encode per call, no special tokens."""

    def __init__(self, tokenizer: Tokenizer, tokenizer_id: str):
        self.tokenizer = tokenizer
        self.id = tokenizer_id

    def count(self, texts: list[str]) -> list[int]:
        encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        return [len(e.ids) for e in encodings]


class RegexTokenCounter:
    """Fallback when no tokenizer is configured (id `regex-v1`): runs of word characters count
    as one token each, and so does every other non-space character."""

    id = REGEX_TOKENIZER_ID

    def count(self, texts: list[str]) -> list[int]:
        return [sum(1 for _ in _REGEX.finditer(text)) for text in texts]


def open_counter(path: str) -> TokenCounter:
    """The regex fallback for an empty path, otherwise the tokenizer at `path`."""
    if not path:
        return RegexTokenCounter()
    return HFTokenCounter(load_tokenizer(path), tokenizer_id(path))


def _tokenizer_file(path: str | Path) -> Path:
    p = Path(path)
    file = p / TOKENIZER_FILE if p.is_dir() else p
    if not file.is_file():
        raise TokenizerError(
            f"no tokenizer at {path}: set filter.tokenizer to a directory holding "
            f"{TOKENIZER_FILE} or to the file itself (or leave it empty for the regex fallback)"
        )
    return file


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer in `path`: a directory holding tokenizer.json, or that file itself."""
    file = _tokenizer_file(path)
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises bare Exception for a file it cannot parse
        raise TokenizerError(f"{file} is not a valid {TOKENIZER_FILE}: {e}") from None


def tokenizer_id(path: str | Path) -> str:
    """`<directory name>@<sha256 of tokenizer.json, 12 hex>`: the same file, the same id."""
    file = _tokenizer_file(path)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:12]
    return f"{file.resolve().parent.name}@{digest}"


def train_tiny_tokenizer(texts: Iterable[str], out_dir: Path, vocab_size: int = 512) -> Path:
    """Train a byte-level BPE on `texts` and save it where `AutoTokenizer` can load it.

    Writes `tokenizer.json` and a `tokenizer_config.json` (a fast tokenizer with
    `<|endoftext|>` as end-of-text and padding token, and `CHAT_TEMPLATE` as its chat template)
    into `out_dir`, which is returned.
    """
    floor = len(pre_tokenizers.ByteLevel.alphabet()) + len(SPECIAL_TOKENS)
    if vocab_size < floor:
        raise TokenizerError(f"vocab_size {vocab_size} is below the byte alphabet: use >= {floor}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out_dir / TOKENIZER_FILE))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
        "additional_special_tokens": list(SPECIAL_TOKENS[1:]),
        "model_max_length": 1_000_000,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (out_dir / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return out_dir
