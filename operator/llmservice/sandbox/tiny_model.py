"""The tiny model the real engine serves, written into a directory.

No model can be downloaded here, and none is needed: vLLM's `--load-format dummy` fills
the weights with random numbers, so only the files vLLM reads before loading weights must
exist: a Llama `config.json`, a tokenizer, and a chat template. The answers are random
tokens, which is all the conformance suite and the sandbox need (shapes, counters,
scheduling), and the engine starts and decodes fast on a CPU.

The sizes are the smallest the CPU attention backend takes (it refuses a head_dim of 16).
`max_position_embeddings` is 32768, as in common small chat models, so the examples'
`maxModelLen` values (up to 131072 with 4x YaRN scaling) fit.

The tokenizer is a byte-level BPE without merges (GPT-2's byte alphabet, one token per
byte, plus the special tokens): any text encodes, decoding gives the bytes back, and it is
written as plain JSON in the `tokenizers` library's format, the same on every run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EOS = "<|endoftext|>"
SPECIAL_TOKENS = (EOS, "<|system|>", "<|user|>", "<|assistant|>")
# A plain template: one marker line per message, then the assistant's marker.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def config(vocab_size: int, eos_id: int) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_attention_heads": 2,
        "head_dim": 64,
        "num_key_value_heads": 1,
        "num_hidden_layers": 2,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "vocab_size": vocab_size,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
    }


def byte_alphabet() -> list[str]:
    """GPT-2's printable stand-in for each byte value, in byte order (as `tokenizers` uses)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[byte] for byte in range(256)]


def tokenizer() -> dict[str, Any]:
    """tokenizer.json: the special tokens first, then one token per byte."""
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *byte_alphabet()])}
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": vocab[token],
                "content": token,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for token in SPECIAL_TOKENS
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", **byte_level},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }


def write(directory: Path) -> None:
    """Write the model's files into `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    tokens = tokenizer()
    vocab_size = len(tokens["model"]["vocab"])
    eos_id = tokens["model"]["vocab"][EOS]
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": EOS,
        "bos_token": EOS,
        "pad_token": EOS,
        "model_max_length": 32768,
        "chat_template": CHAT_TEMPLATE,
    }
    files = {
        "tokenizer.json": tokens,
        "config.json": config(vocab_size, eos_id),
        "tokenizer_config.json": tokenizer_config,
        "special_tokens_map.json": {"eos_token": EOS, "bos_token": EOS, "pad_token": EOS},
        "generation_config.json": {"bos_token_id": eos_id, "eos_token_id": eos_id},
    }
    for name, content in files.items():
        (directory / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
