"""Hyena operator (Poli et al., 2023, "Hyena Hierarchy: Towards Larger Convolutional Language
Models"), in MAD-Lab's configuration (implicit long filter, safari-style).

For order N, with inner width E = inner_factor * d_model:

    z              = tile_{proj_groups}(x W_in + b_in)                  z in R^{(N+1) E}
    (x^0..x^{N-1}, v) = split_E(ShortConv(z))      causal depthwise conv, length short_filter_order
    v^0            = v
    v^{n+1}        = h^n * (x^{N-n} . v^n) + D^n (x^{N-n} . v^n)       n = 0..N-2 (causal long conv)
    y              = (x^0 . v^{N-1}) W_out + b_out

``.`` is the elementwise product and ``*`` the causal convolution over time. The long filters are
implicit: an FFN of positional features p (trainable, initialised as below, as in MAD-Lab),
modulated by an exponential decay window,

    p_t  = [t / (T-1)... , cos(2 pi f t / T), -sin(2 pi f t / T)]   (emb_dim = 1 + 2 bands)
    h_t  = (W_o sin(W_2 sin(W_1 sin(W_0 p_t + b_0) + b_1) + b_2)) . exp(-|delta| t / (T-1)) ,

where T = max_len: the filter depends only on positions 0..max_len-1 (MAD-Lab's ``HyenaFilter``,
``Sin`` with a trainable frequency shared by all of its activations, ``ExponentialModulation``
with fast/slow decay 0.3/1.5 to the target 1e-2). The parallel form does the long convolution by
FFT (padded to 2L); ``step`` keeps the last ``max_len`` long-conv inputs of every order and takes
the dot product with the filter, plus a ``short_filter_order - 1`` buffer for the short conv.

Multi-head (``num_heads`` H > 1): the inner width splits into H heads of E/H channels and the long
filters (and D) have E/H channels shared by all heads (channel c uses filter c mod E/H), as in
MAD-Lab, whose long conv has head_dim * (order - 1) channels.

``mode: outer-product`` is MAD-Lab's multi-head Hyena (``MultiHeadHyenaOperator`` with
``fftconv_heads``; Massaroli et al., 2024, "Mechanistic Design and Scaling of Hybrid
Architectures", the ``mh-hyena`` layer), order 2 only: with (x^0, x^1, v) from the short conv,
the inner width splits into G = E / head_dim heads of ``head_dim`` consecutive channels, and per
head g the outer product of v and x^1 is long-convolved (one filter h_g and skip D_g per head)
and read out by x^0, as H3 does with its SSM:

    y[g, j] = sum_i x^0[g, i] . ( h_g * (v[g, i] . x^1[g, j]) + D_g v[g, i] . x^1[g, j] )

MAD-Lab's config key ``num_heads: 16`` is this head_dim (it sets the outer-product size; the
head count is E / 16). ``architectures/mh-hyena.yaml`` writes its ``configs/layers/mh-hyena.yml``
(inner_factor 1, filter FFN width 2, head_dim 16; proj_groups 4, MAD-Lab's inherited default).
``step`` keeps every outer product so far (the filter is not recurrent).

Defaults are MAD-Lab's ``configs/layers/hyena.yml``: order 2, inner_factor 4, proj_groups 4
(the in-projection is (N+1)E/4 wide and tiled 4 times), short filter 3, filter FFN width 4
(``filter_order``; safari's default is 64), emb_dim 3, two inner filter layers, bias D on.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...configs.primitives.hyena import HyenaConfig
from ...ops import causal_conv, fft_conv
from ...ops.causal_conv import causal_conv1d, causal_conv1d_step
from ...ops.fft_conv import fft_causal_conv
from ..base import SequenceMixer
from ..registry import register


class _Sin(nn.Module):
    def __init__(self, dim: int, w: float):
        super().__init__()
        self.freq = nn.Parameter(w * torch.ones(1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


def positional_features(max_len: int, emb_dim: int) -> torch.Tensor:
    """[max_len, emb_dim]: t in [0, 1], then cos / -sin of ``(emb_dim - 1) // 2`` bands (the
    real and imaginary parts of exp(-i f w_t)), the input of an implicit long filter (safari's,
    MAD-Lab's and Zoology's ``PositionalEmbedding``)."""
    bands = (emb_dim - 1) // 2
    t = torch.linspace(0, 1, max_len, dtype=torch.float64)[:, None]  # [T, 1]
    w = 2 * math.pi * torch.arange(max_len, dtype=torch.float64)[:, None] / max_len
    f = torch.linspace(1e-4, bands - 1, bands, dtype=torch.float64)[None]
    return torch.cat([t, torch.cos(f * w), -torch.sin(f * w)], dim=-1).float()


class _FilterFFN(nn.Module):
    """Linear, then (sin, Linear) x (filter_depth + 1), every sin with ONE shared frequency
    (MAD-Lab's single ``Sin`` module). The activation is called between the Linears instead of
    being listed several times in a Sequential: a module tied at several paths made the
    engine's compiled step fail (torch.compile of functional_call under vmap: "Cannot access
    storage of BatchedTensorImpl"), so every Hyena spec trained eagerly on the GPU."""

    def __init__(self, cfg: HyenaConfig, channels: int):
        super().__init__()
        dims = [cfg.emb_dim] + [cfg.filter_order] * (cfg.filter_depth + 1)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.act = _Sin(cfg.filter_order, cfg.filter_w)
        self.out = nn.Linear(cfg.filter_order, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for linear in self.linears:
            x = self.act(linear(x))
        return self.out(x)


class HyenaFilter(nn.Module):
    """Implicit long filter h[t, c] for t < max_len (FFN of positions times a decay window)."""

    def __init__(self, cfg: HyenaConfig, channels: int, max_len: int):
        super().__init__()
        t = torch.linspace(0, 1, max_len, dtype=torch.float64)[:, None]  # [T, 1]
        z = positional_features(max_len, cfg.emb_dim)  # [T, emb_dim]
        # The positional features are trained: MAD-Lab's PositionalEmbedding registers z as a
        # parameter (mad/model/layers/featurization/hyena_filter.py, ``register("z", z,
        # lr=lr_pos_emb)``); the per-parameter lr / weight decay it attaches (``_optim``) is
        # never read by its optimizer (mad/model/pl_model_wrapper.py), so z trains at the global
        # lr and, its name holding neither "bias" nor "norm", with weight decay. t stays fixed.
        self.z = nn.Parameter(z)
        self.register_buffer("t", t.float(), persistent=False)
        self.ffn = _FilterFFN(cfg, channels)
        self.modulate = cfg.modulate
        max_decay = math.log(cfg.decay_target) / cfg.fast_decay_pct
        min_decay = math.log(cfg.decay_target) / cfg.slow_decay_pct
        self.register_buffer(
            "deltas", torch.linspace(min_decay, max_decay, channels)[None], persistent=False
        )

    def forward(self, L: int) -> torch.Tensor:  # -> [L, channels]
        h = self.ffn(self.z[:L])
        if self.modulate:
            h = h * torch.exp(-self.t[:L] * self.deltas.abs())
        return h


def outer_product_conv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h: torch.Tensor,
                       D: torch.Tensor, head_dim: int) -> torch.Tensor:
    """The H3 / multi-head Hyena mixing of ``[B, G*N, L]`` inputs in G heads of N = head_dim
    channels (head g holds channels g*N .. g*N + N-1), with one long filter ``h [G, L]`` and skip
    ``D [G]`` per head::

        y[g, j] = sum_i q[g, i] . ( h_g * (k[g, i] . v[g, j]) + D_g k[g, i] . v[g, j] )

    (``*`` causal convolution over time, ``.`` elementwise): per head, the N x N outer product
    of k and v is convolved and read out by q. Returns ``[B, G*N, L]`` (head-major).
    """
    B, E, L = q.shape
    G = E // head_dim
    q, k, v = (t.reshape(B, G, head_dim, L) for t in (q, k, v))
    kv = k[:, :, :, None] * v[:, :, None]  # [B, G, N(i), N(j), L]
    y = fft_causal_conv(kv, h[None, :, None, None]) + kv * D[None, :, None, None, None]
    return (q[:, :, :, None] * y).sum(2).reshape(B, E, L)


@register(HyenaConfig)
class Hyena(SequenceMixer):
    """Hyena: gated implicit long convolutions (order N) with short depthwise filters."""

    ops = (causal_conv, fft_conv)

    def __init__(self, cfg: HyenaConfig, d_model: int, max_len: int):
        super().__init__(cfg, d_model, max_len)
        cfg.check(d_model)
        self.order = cfg.order
        self.inner = cfg.inner_factor * d_model
        self.head_dim = self.inner // cfg.num_heads
        self.width = (cfg.order + 1) * self.inner
        self.in_proj = nn.Linear(d_model, self.width // cfg.proj_groups)
        self.short_filter = nn.Conv1d(self.width, self.width, cfg.short_filter_order,
                                      groups=self.width)
        self.outer = cfg.mode == "outer-product"
        channels = self.inner // cfg.head_dim if self.outer else self.head_dim  # per filter
        self.filter = HyenaFilter(cfg, channels * (cfg.order - 1), max_len)
        if cfg.bias:
            self.D = nn.Parameter(torch.randn(cfg.order - 1, channels))
        else:
            self.register_buffer("D", torch.zeros(cfg.order - 1, channels), persistent=False)
        self.out_proj = nn.Linear(self.inner, d_model)

    def _project(self, x: torch.Tensor) -> torch.Tensor:  # [..., D] -> [..., width]
        z = self.in_proj(x)
        return z.repeat(*([1] * (z.dim() - 1)), self.cfg.proj_groups)

    def _filters(self, L: int) -> torch.Tensor:
        """[order-1, inner, L]: the long filter of each recurrence step, tiled over heads."""
        h = self.filter(L).T.reshape(self.order - 1, self.head_dim, L)
        return h.repeat(1, self.cfg.num_heads, 1)

    def _D(self) -> torch.Tensor:  # [order-1, inner]
        return self.D.repeat(1, self.cfg.num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        if L > self.max_len:
            raise ValueError(f"hyena input length {L} exceeds max_len={self.max_len}")
        z = causal_conv1d(self._project(x), self.short_filter.weight, self.short_filter.bias,
                          impl=self.cfg.impl).transpose(1, 2)  # [B, width, L]
        *xs, v = z.split(self.inner, dim=1)
        if self.outer:
            y = outer_product_conv(xs[0], v, xs[1], self.filter(L).T, self.D[0], self.cfg.head_dim)
            return self.out_proj(y.transpose(1, 2))
        h, D = self._filters(L), self._D()
        for n, x_i in enumerate(reversed(xs[1:])):
            v = v * x_i
            v = fft_causal_conv(v, h[n]) + v * D[n, :, None]
        y = (v * xs[0]).transpose(1, 2)
        return self.out_proj(y)

    def init_state(self, batch_size: int, device=None, dtype=None):
        kind = self.state_kind(device, dtype)
        device, dtype = kind["device"], kind["dtype"]
        k = self.cfg.short_filter_order
        if self.outer:  # every outer product so far, [B, G, N, N, max_len]
            N = self.cfg.head_dim
            shape = (batch_size, self.inner // N, N, N, self.max_len)
        else:
            shape = (self.order - 1, batch_size, self.inner, self.max_len)
        return {
            "short": torch.zeros(batch_size, self.width, k - 1, device=device, dtype=dtype),
            "long": torch.zeros(shape, device=device, dtype=dtype),
            "pos": 0,
        }

    def step(self, x_t: torch.Tensor, state):
        pos = state["pos"]
        if pos >= self.max_len:
            raise ValueError(f"hyena step beyond max_len={self.max_len}")
        z = self._project(x_t)  # [B, width]
        zc, short = causal_conv1d_step(z, state["short"], self.short_filter.weight,
                                       self.short_filter.bias)
        *xs, v = zc.split(self.inner, dim=-1)
        hist = state["long"].clone()
        if self.outer:
            B, N = x_t.shape[0], self.cfg.head_dim
            q, k, v = (t.reshape(B, -1, N) for t in (xs[0], v, xs[1]))
            kv = k[..., :, None] * v[..., None, :]  # [B, G, i, j]
            hist[..., pos] = kv.to(hist.dtype)
            h = self.filter(pos + 1).T.flip(-1)  # [G, pos+1]: h[t - s] for s = 0..t
            y = (hist[..., : pos + 1].to(h.dtype) * h[:, None, None]).sum(-1)
            y = y + kv * self.D[0, :, None, None]
            y = (q[..., None] * y).sum(2).reshape(B, self.inner)
            return self.out_proj(y), {"short": short, "long": hist, "pos": pos + 1}
        h = self._filters(self.max_len)[..., : pos + 1].flip(-1)  # h[t - s] for s = 0..t
        D = self._D()
        for n, x_i in enumerate(reversed(xs[1:])):
            v = v * x_i
            hist[n, :, :, pos] = v.to(hist.dtype)
            v = (hist[n, :, :, : pos + 1].to(h.dtype) * h[n]).sum(-1) + v * D[n]
        y = self.out_proj(v * xs[0])
        return y, {"short": short, "long": hist, "pos": pos + 1}

    def mixing_flops_per_token(self, seq_len: int) -> float:
        fft = 3 * 5.0 * math.log2(2 * max(seq_len, 1))  # three FFTs of size 2L per channel
        short = 2.0 * self.cfg.short_filter_order * self.width
        long = (self.order - 1) * self.inner * (fft + 4.0)  # conv, skip, gate
        if self.outer:  # head_dim outer products per channel, each convolved and read out
            long = self.inner * self.cfg.head_dim * (fft + 5.0)
        return short + long + self.inner  # final gate
