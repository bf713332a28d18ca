"""Top-k mixture of experts (Shazeer et al., 2017, "Outrageously Large Neural Networks"; Fedus
et al., 2021, "Switch Transformers"; Mixtral-style top-k softmax routing).

For a token x, router logits s = x W_r (E experts), top-k set T(x):

    g_e(x)   = softmax_{e in T(x)}(s_e)   for e in T(x), else 0
    y        = sum_{e in T(x)} g_e(x) FFN_e(x)
    FFN_e(x) = W2_e (act(W1g_e x) . (W1u_e x))   (``expert: glu``, MAD-Lab's MoE expert)
             | W2_e act(W1_e x)                   (``expert: mlp``)

Load balancing (Switch Transformer), over the N tokens of the last forward:

    f_e  = (number of top-k assignments to e) / (N k),   P_e = mean_x softmax(s)_e
    aux  = aux_loss_weight * E * sum_e f_e P_e           (1 x weight when perfectly balanced)

``aux_loss()`` returns it (a scalar in the graph). Experts have no capacity limit (no token is
dropped), so a token's output does not depend on the rest of the batch and ``step`` equals
``forward``. ``dispatch: dense`` evaluates every expert with two matmuls and zero gates outside
the top-k (fast at MAD's tiny experts); ``sparse`` gathers each expert's tokens (a loop over
experts, not tokens). Both give the same outputs.

Defaults follow MAD-Lab's ``moe-mlp.yml``: 8 experts, 2 active, expert inner width 16, no bias,
gated experts with tanh-GELU (MAD-Lab's ``MoeMlp``; its dense softmax over all zeroed logits is
replaced by the standard softmax over the top-k logits).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...configs.primitives.moe import MoEConfig
from ..base import ChannelMixer
from ..registry import register

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "relu": F.relu,
}


@register(MoEConfig)
class MoE(ChannelMixer):
    """Top-k routed mixture of small (gated) feed-forward experts with a balancing loss."""

    def __init__(self, cfg: MoEConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        E, I, D = cfg.n_experts, cfg.d_inner, d_model
        self.up_width = 2 * I if cfg.expert == "glu" else I
        self.router = nn.Linear(D, E, bias=False)
        b_in, b_out = 1 / math.sqrt(D), 1 / math.sqrt(I)
        self.w_in = nn.Parameter(torch.empty(E, D, self.up_width).uniform_(-b_in, b_in))
        self.w_out = nn.Parameter(torch.empty(E, I, D).uniform_(-b_out, b_out))
        if cfg.bias:
            self.b_in = nn.Parameter(torch.empty(E, self.up_width).uniform_(-b_in, b_in))
            self.b_out = nn.Parameter(torch.empty(E, D).uniform_(-b_out, b_out))
        else:
            self.b_in = self.b_out = None
        self.act = ACTIVATIONS[cfg.activation]
        self._aux: torch.Tensor | None = None

    def _hidden(self, h: torch.Tensor) -> torch.Tensor:  # [..., up_width] -> [..., I]
        if self.cfg.expert == "glu":
            gate, up = h.split(self.cfg.d_inner, dim=-1)
            return self.act(gate) * up
        return self.act(h)

    def route(self, x: torch.Tensor):
        """x [N, D] -> (top-k indices [N, k], top-k gates [N, k], all-expert probs [N, E])."""
        logits = self.router(x)
        top, idx = logits.topk(self.cfg.top_k, dim=-1)
        return idx, top.softmax(-1), logits.float().softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, self.d_model)
        N, E, k = x.shape[0], self.cfg.n_experts, self.cfg.top_k
        idx, gates, probs = self.route(x)
        if self.cfg.dispatch == "dense":
            dense = torch.zeros(N, E, dtype=gates.dtype, device=x.device).scatter(1, idx, gates)
            h = (x @ self.w_in.permute(1, 0, 2).reshape(self.d_model, -1)).view(N, E, -1)
            if self.b_in is not None:
                h = h + self.b_in
            h = self._hidden(h) * dense[..., None]  # [N, E, I]
            y = h.reshape(N, -1) @ self.w_out.reshape(-1, self.d_model)
            if self.b_out is not None:
                y = y + dense @ self.b_out
        else:
            y = torch.zeros_like(x)
            for e in range(E):
                tok, slot = (idx == e).nonzero(as_tuple=True)
                if tok.numel() == 0:
                    continue
                h = x[tok] @ self.w_in[e]
                if self.b_in is not None:
                    h = h + self.b_in[e]
                out = self._hidden(h) @ self.w_out[e]
                if self.b_out is not None:
                    out = out + self.b_out[e]
                y = y.index_add(0, tok, out * gates[tok, slot, None])
        counts = torch.zeros(E, device=x.device, dtype=probs.dtype).scatter_add(
            0, idx.reshape(-1), torch.ones(idx.numel(), device=x.device, dtype=probs.dtype)
        )
        f = counts / max(N * k, 1)
        self._aux = self.cfg.aux_loss_weight * E * (f * probs.mean(0)).sum()
        return y.reshape(shape)

    def aux_loss(self) -> torch.Tensor | None:
        return self._aux

    def flops_per_token(self, seq_len: int) -> float:
        expert = self.w_in[0].numel() + self.w_out[0].numel()
        return 2.0 * (self.router.weight.numel() + self.cfg.top_k * expert)
