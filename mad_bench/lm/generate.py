"""Sampling from a trained byte-level LM through its token-by-token path.

The prompt and every sampled byte go through ``model.step`` (each mixer's recurrent form: a KV
cache, a scan state, a conv buffer), never through the parallel forward, so generation costs one
step per byte and shows what the recurrent form computes.
"""
from __future__ import annotations

import torch

from ..compiler import build_model
from ..spec import load_spec
from .data import VOCAB_SIZE
from .train import load_checkpoint


def load_for_generation(spec, checkpoint: str, device: str = "cpu"):
    """The spec's model with the checkpoint's weights. The spec must be the one trained."""
    spec = load_spec(spec)
    state = load_checkpoint(checkpoint)
    if state["spec_hash"] != spec.spec_hash():
        raise ValueError(f"--checkpoint {checkpoint!r} holds spec {state['spec_name']!r} (hash "
                         f"{state['spec_hash']}), not {spec.name!r} (hash {spec.spec_hash()}): "
                         "pass the spec it was trained from")
    model = build_model(spec, vocab_size=VOCAB_SIZE, max_len=state["max_len"], backbone="lm")
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None,
                gen: torch.Generator) -> torch.Tensor:
    """One token per row of ``logits[B, V]``: greedy at temperature 0, else softmax(logits / T)
    restricted to the ``top_k`` largest."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs.cpu(), 1, generator=gen)[:, 0].to(logits.device)


@torch.no_grad()
def generate(model, prompt: bytes, max_new_tokens: int = 200, temperature: float = 0.8,
             top_k: int | None = 50, seed: int = 0) -> bytes:
    """``prompt`` followed by up to ``max_new_tokens`` sampled bytes (no more than the model's
    ``max_len`` in all)."""
    if not prompt:
        raise ValueError("--prompt: give at least one character")
    if temperature < 0:
        raise ValueError(f"--temperature {temperature}: must be >= 0 (0: greedy)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"--top-k {top_k}: must be >= 1")
    room = model.max_len - len(prompt)
    if room < 1:
        raise ValueError(f"--prompt is {len(prompt)} bytes: the model was trained on windows of "
                         f"{model.max_len} (--seq-len), leaving no room to generate")
    n_new = min(max_new_tokens, room)
    device = model.embed.weight.device
    gen = torch.Generator().manual_seed(seed)
    state = model.init_state(1, device=device)
    logits = None
    for byte in prompt:
        logits, state = model.step(torch.tensor([byte], device=device), state)
    out = bytearray(prompt)
    for i in range(n_new):
        token = sample_next(logits, temperature, top_k, gen)
        out.append(int(token))
        if i + 1 < n_new:
            logits, state = model.step(token, state)
    return bytes(out)
