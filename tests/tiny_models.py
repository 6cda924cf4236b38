"""Tiny random-weight models of every supported family (seeded), for structural tests."""
from __future__ import annotations

import torch
import transformers as T

COMMON = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)


def tiny(family: str, seed: int = 0):
    torch.manual_seed(seed)
    if family == "llama":
        m = T.LlamaForCausalLM(T.LlamaConfig(**COMMON, intermediate_size=64, num_key_value_heads=2,
                                             tie_word_embeddings=True))
    elif family == "gemma3":
        m = T.Gemma3ForCausalLM(T.Gemma3TextConfig(**COMMON, intermediate_size=64, num_key_value_heads=1,
                                                   head_dim=8))
    elif family == "gpt2":
        m = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4,
                                           bos_token_id=0, eos_token_id=0))
    elif family == "mixtral":
        m = T.MixtralForCausalLM(T.MixtralConfig(**COMMON, intermediate_size=64, num_key_value_heads=2,
                                                 num_local_experts=4, num_experts_per_tok=2))
    elif family == "qwen2_moe":
        m = T.Qwen2MoeForCausalLM(T.Qwen2MoeConfig(**COMMON, intermediate_size=64, moe_intermediate_size=16,
                                                   shared_expert_intermediate_size=32, num_key_value_heads=2,
                                                   num_experts=4, num_experts_per_tok=2))
    elif family == "qwen3_moe":
        m = T.Qwen3MoeForCausalLM(T.Qwen3MoeConfig(**COMMON, intermediate_size=64, moe_intermediate_size=16,
                                                   num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                                                   head_dim=8))
    elif family == "olmoe":
        m = T.OlmoeForCausalLM(T.OlmoeConfig(**COMMON, intermediate_size=64, num_key_value_heads=2,
                                             num_experts=4, num_experts_per_tok=2, pad_token_id=1))
    else:
        raise ValueError(family)
    return m.eval()


FAMILIES = ["llama", "gemma3", "gpt2", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe"]


class CharTokenizer:
    """Minimal tokenizer stand-in for tiny models (bytes mod vocab)."""
    pad_token_id = 0
    eos_token_id = 0
    chat_template = None
    padding_side = "right"

    def __call__(self, texts, return_tensors=None, padding=False, **_):
        single = isinstance(texts, str)
        texts = [texts] if single else texts
        ids = [[1 + (b % 120) for b in t.encode()] for t in texts]
        if not return_tensors:
            return {"input_ids": ids[0] if single else ids}
        n = max(len(x) for x in ids)
        pad = lambda x: (x + [0] * (n - len(x))) if self.padding_side == "right" else ([0] * (n - len(x)) + x)
        mask = lambda x: ([1] * len(x) + [0] * (n - len(x))) if self.padding_side == "right" else ([0] * (n - len(x)) + [1] * len(x))
        return {"input_ids": torch.tensor([pad(x) for x in ids]), "attention_mask": torch.tensor([mask(x) for x in ids])}

    def decode(self, ids, **_):
        return "".join(chr(32 + int(i) % 90) for i in ids)
