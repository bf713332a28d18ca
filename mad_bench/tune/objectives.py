"""Objectives of a search: MAD score (from result rows), size, state and measured throughput."""
from __future__ import annotations

import difflib
import time

OBJECTIVES: dict[str, str] = {
    "mad_score": "maximize",     # results.aggregate.mad_score of the trial's rows
    "params": "minimize",        # largest model over the suite's settings
    "state_bytes": "minimize",   # recurrent state / KV cache per sequence (fp32)
    "throughput": "maximize",    # measured training tokens/s on the worker's device
}


def parse_objectives(text: str | list[str] | None) -> list[str]:
    items = text if isinstance(text, list) else [t.strip() for t in (text or "mad_score").split(",")]
    items = [t for t in items if t]
    if not items:
        raise ValueError("--objectives: give at least one objective")
    for name in items:
        if name not in OBJECTIVES:
            close = difflib.get_close_matches(name, OBJECTIVES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"--objectives: unknown objective {name!r} ({hint}valid: {', '.join(OBJECTIVES)})")
    if len(set(items)) != len(items):
        raise ValueError(f"--objectives: {text!r} names an objective twice")
    return items


def spec_costs(spec, settings) -> dict[str, int]:
    """Largest parameter count and state bytes of ``spec`` over the settings' shapes (CPU build)."""
    from ..info import summarize

    params = state = 0
    seen = set()
    for s in settings:
        ts = s.task_setting
        shape = (ts.model_vocab_size(), ts.seq_len, ts.backbone)
        if shape in seen:
            continue
        seen.add(shape)
        _, total = summarize(spec, shape[0], shape[1], backbone=shape[2])
        params, state = max(params, total.params), max(state, total.state_bytes)
    return {"params": int(params), "state_bytes": int(state)}


def measure_throughput(spec, setting, batch_size: int, device, steps: int = 3) -> float:
    """Training tokens per second (forward + backward) of ``spec`` at ``setting``'s shape."""
    import torch

    from ..compiler import build_model

    ts = setting.task_setting
    vocab = ts.model_vocab_size()
    model = build_model(spec, vocab_size=vocab, max_len=ts.seq_len, backbone=ts.backbone).to(device)
    x = torch.randint(0, vocab, (batch_size, ts.seq_len), device=device)

    def step():
        out = model(x)
        out.float().mean().backward()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch_size * ts.seq_len * steps / max(time.perf_counter() - t0, 1e-9)
