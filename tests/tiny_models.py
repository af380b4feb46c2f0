"""Tiny random-initialised causal LMs of several architectures, for exactness tests against eager attention.

Each config keeps the architecture's distinctive features (GQA, sliding windows, q/k norms, fused
qkv, query pre-attention scaling) at a size that runs in milliseconds on a CPU.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM
from transformers import Gemma3TextConfig, LlamaConfig, MistralConfig, Phi3Config, Qwen2Config, Qwen3Config

COMMON = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    tie_word_embeddings=False,
)

SLIDING_WINDOW = 8


def tiny_configs() -> dict[str, object]:
    return {
        "llama": LlamaConfig(**COMMON),
        "qwen2": Qwen2Config(**COMMON),
        "qwen3": Qwen3Config(**COMMON, head_dim=16),
        "mistral": MistralConfig(**COMMON, sliding_window=SLIDING_WINDOW),
        "phi3": Phi3Config(**{**COMMON, "pad_token_id": 0}),
        "gemma3": Gemma3TextConfig(
            **COMMON,
            head_dim=16,
            sliding_window=SLIDING_WINDOW,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            query_pre_attn_scalar=16,
        ),
    }


ARCHITECTURES = list(tiny_configs())


def tiny_model(arch: str, attn_implementation: str = "sdpa", seed: int = 0) -> torch.nn.Module:
    """A deterministic random model; the same seed gives the same weights whatever the attention."""
    torch.manual_seed(seed)
    config = tiny_configs()[arch]
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation, dtype=torch.float32)
    # Random init leaves attention nearly uniform; sharpen q/k so argmax positions are well separated.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(k in name for k in ("q_proj", "k_proj", "qkv_proj")) and param.dim() == 2:
                param.mul_(6.0)
    return model.eval()
