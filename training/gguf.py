"""A GGUF file to a Hugging Face model directory that `trajlake train` starts from.

transformers reads GGUF (through the `gguf` package) and dequantizes every tensor, but refuses to
`save_pretrained` a model loaded that way, so the conversion rebuilds a plain model from the
config and loads the dequantized state dict into it. The tokenizer comes from the GGUF's vocabulary
and merges, and its chat template from the GGUF's `tokenizer.chat_template`.

Run as:
    python -m trajlake.training.gguf MODEL.gguf OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from trajlake.training.errors import TrainingError

#: written last, so a directory holding it is a finished conversion
DONE_FILE = "converted_from.json"


def tokenizer_from_gguf(gguf: Path, out_dir: Path) -> Path:
    """The GGUF's tokenizer (vocabulary, merges, special tokens, chat template) saved to
    `out_dir` as a Hugging Face tokenizer directory."""
    from transformers import AutoTokenizer

    gguf = Path(gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise TrainingError(
            f"{gguf} has no tokenizer.chat_template: convert a chat (Instruct) model, or give "
            "the training run a chat_template file"
        )
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


def convert_gguf(gguf: Path, out_dir: Path, dtype: str = "float32") -> Path:
    """Dequantize `gguf` into a plain Hugging Face model directory (config, safetensors,
    tokenizer, generation config) at `out_dir`; a finished directory is returned as is."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    gguf, out_dir = Path(gguf).resolve(), Path(out_dir)
    if (out_dir / DONE_FILE).is_file():
        return out_dir
    if not gguf.is_file():
        raise TrainingError(f"no GGUF file at {gguf}: give the path of a .gguf model")
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype)
    )
    # A config rebuilt from plain data carries nothing of the GGUF load.
    config = AutoConfig.for_model(**_plain_config(loaded.config.to_dict()))
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [name for name in missing if not _tied(name, config)]
    if missing or unexpected:
        raise TrainingError(
            f"{gguf}: the dequantized tensors do not fit a {config.model_type} model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}): is it a supported architecture?"
        )
    del loaded
    tokenizer = tokenizer_from_gguf(gguf, out_dir)
    model.generation_config = _generation_config(GenerationConfig, out_dir)
    model.save_pretrained(out_dir)
    record = {"gguf": gguf.name, "bytes": gguf.stat().st_size, "dtype": dtype}
    (tokenizer / DONE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return out_dir


def _plain_config(data: dict) -> dict:
    dropped = {"_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype"}
    return {k: v for k, v in data.items() if k not in dropped and "quantization" not in k}


def _tied(name: str, config: object) -> bool:
    return name == "lm_head.weight" and bool(getattr(config, "tie_word_embeddings", False))


def _generation_config(cls: type, tokenizer_dir: Path):  # -> GenerationConfig
    """Stop at the end of a turn (`<|im_end|>`) as well as at the end of text."""
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    stops = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", config.get("eos_token"))]
    stops = sorted({s for s in stops if isinstance(s, int) and s != tokenizer.unk_token_id})
    return cls(eos_token_id=stops, pad_token_id=tokenizer.pad_token_id, do_sample=False)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m trajlake.training.gguf MODEL.gguf OUT_DIR", file=sys.stderr)
        return 2
    print(convert_gguf(Path(args[0]), Path(args[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
