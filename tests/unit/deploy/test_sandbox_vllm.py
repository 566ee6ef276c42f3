"""The real engine's install and start, in the parts that need no vLLM: which requirements
are installed, which flags the runtime changes, and the tiny model's files."""

from __future__ import annotations

import json
from pathlib import Path

from llmservice.api.validation import parse_llmservice
from llmservice.render import engine
from llmservice.sandbox import tiny_model
from llmservice.sandbox.product import Product
from llmservice.sandbox.runtime.vllm_engine import FlagChange, adapt_args
from llmservice.sandbox.runtime.workloads import PodLaunch, workloads
from llmservice.sandbox.versions import VllmLayout
from llmservice.sandbox.vllm_install import engine_requirements
from tests.unit.api.fixtures import MINIMAL, deep_merge

REQUIRES = [
    "regex",
    "transformers<5.20.0,>=5.16.1",
    'torch==2.13.0+cpu; platform_machine == "x86_64" or platform_machine == "aarch64"',
    'torch==2.13.0; platform_system == "Darwin"',
    'torchaudio; platform_machine != "s390x"',
    'torchvision; platform_machine != "riscv64"',
    "torchcodec>=0.14",
    'intel-openmp==2024.2.1; platform_machine == "x86_64"',
    'zentorch==2.13.0.1; extra == "zen"',
    'mistral_common[audio]; extra == "audio"',
]


def test_requirements_keep_torch_from_pypi_and_drop_media_and_extras() -> None:
    assert engine_requirements(REQUIRES) == [
        "regex",
        "transformers<5.20.0,>=5.16.1",
        'torch==2.13.0; platform_machine == "x86_64" or platform_machine == "aarch64"',
        'torch==2.13.0; platform_system == "Darwin"',
        'intel-openmp==2024.2.1; platform_machine == "x86_64"',
    ]


def rendered(spec: dict[str, object]) -> list[str]:
    return engine.engine_args(parse_llmservice(deep_merge(MINIMAL, {"spec": spec})))


def test_minimal_args_change_only_the_model_the_address_and_the_weights() -> None:
    args, changes = adapt_args(rendered({}), "/cache/model", "127.63.0.9", 8000)
    assert [str(c) for c in changes] == [
        f"--model {MINIMAL['spec']['model']['name']} -> /cache/model",
        "--host 0.0.0.0 -> 127.63.0.9",
        "added --load-format dummy",
    ]
    assert args[args.index("--model") + 1] == "/cache/model"
    assert args[-2:] == ["--load-format", "dummy"]
    assert args[args.index("--served-model-name") + 1] == MINIMAL["spec"]["model"]["name"]


def test_what_the_cpu_cannot_honour_is_removed_and_said() -> None:
    spec = {
        "model": {"quantization": "awq", "revision": "main", "aliases": ["a", "b"]},
        "engine": {"gpus": 4, "tensorParallelSize": 2, "extraArgs": ["--enable-prefix-caching"]},
    }
    args, changes = adapt_args(rendered(spec), "/m", "127.0.0.2", 8000)
    assert {c.flag for c in changes if c.after is None} == {
        "--quantization",
        "--revision",
        "--tensor-parallel-size",
        "--pipeline-parallel-size",
    }
    assert FlagChange("--tensor-parallel-size", "2", None) in changes
    for flag in ("--quantization", "--revision", "--tensor-parallel-size", "-pp"):
        assert flag not in args
    assert args[args.index("--served-model-name") + 1 :][:3] == [
        MINIMAL["spec"]["model"]["name"],
        "a",
        "b",
    ]
    assert "--enable-prefix-caching" in args


def test_the_vllm_table_runs_the_engine_interpreter_with_its_environment(tmp_path: Path) -> None:
    layout = VllmLayout(tmp_path)
    row = workloads("vllm", layout)["engine"]
    product = Product(Path("/nonexistent/python"))
    launch = PodLaunch("ns", "chat-engine-0", "engine", "127.63.0.4", 8000, rendered({}), product)
    argv = row.command(launch)
    assert argv[:3] == [str(layout.python), "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--host") + 1] == "127.63.0.4"
    assert row.env["HF_HUB_OFFLINE"] == "1"
    assert workloads("sim")["engine"].env == {}


def test_tiny_model_tokenizer_has_every_byte_once(tmp_path: Path) -> None:
    tiny_model.write(tmp_path)
    tokens = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tokens["model"]["vocab"]
    assert len(set(tiny_model.byte_alphabet())) == 256
    assert sorted(vocab.values()) == list(range(len(vocab)))
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert config["vocab_size"] == len(vocab) == 260
    assert config["eos_token_id"] == vocab[tiny_model.EOS]
    assert config["hidden_size"] // config["num_attention_heads"] == config["head_dim"] == 64
