"""The model details of MAD-Lab (athms/mad-lab) and Zoology that the `mad` suite follows:
initialisation, biases, the autoencoder's decoder, Hyena's trainable positional features,
BaseConv's long filter, the paper's reference specs and a spec hash that moves with the code."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mad_bench import build_model, load_spec
from mad_bench.configs import architecture

ROOT = Path(__file__).resolve().parents[1]
ARCH = ROOT / "architectures"
VOCAB, L = 64, 12


def tiny(layers, **kw):
    return load_spec({"name": "tiny", "d_model": 32, "layers": layers, **kw})


def linears(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


# -- row 4: initialisation -----------------------------------------------------------------

def test_lm_embedding_is_n0_002_and_every_linear_bias_zero():
    torch.manual_seed(0)
    model = build_model(tiny([{"type": "attention", "n_heads": 4}, "mlp", "hyena"]), VOCAB, L)
    w = model.embed.weight
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002
    biased = [(n, m) for n, m in linears(model) if m.bias is not None]
    assert {"head", "stack.blocks.0.mixer.qkv", "stack.blocks.1.mixer.fc1",
            "stack.blocks.2.mixer.in_proj", "stack.blocks.2.mixer.filter.ffn.linears.0"} <= {n for n, _ in biased}
    assert all(not m.bias.any() for _, m in biased), [n for n, m in biased if m.bias.any()]
    # the LM keeps PyTorch's Linear weights: U(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in)
    qkv = model.stack.blocks[0].mixer.qkv.weight
    assert qkv.abs().max() <= 1 / math.sqrt(32) and abs(qkv.std().item() - 1 / math.sqrt(96)) < 0.01


def test_lm_keeps_a_primitives_own_bias_init_marked_no_reinit():
    """mamba_ssm marks Mamba's dt bias ``_no_reinit`` (MAD-Lab's LM init skips it); the xLSTM
    gate biases are marked the same way."""
    torch.manual_seed(0)
    model = build_model(tiny(["mamba", "mlstm", "slstm"]), VOCAB, L)
    mamba, mlstm, slstm = (b.mixer for b in model.stack.blocks)
    dt = F.softplus(mamba.dt_proj.bias)
    assert (dt >= 1e-4 - 1e-7).all() and (dt <= 0.1 + 1e-6).all() and dt.std() > 0
    assert (mlstm.gates.bias[mlstm.n_heads:] >= 3.0).all()
    assert slstm.W.bias.abs().sum() > 0


def test_autoencoder_init_every_linear_n0_002_bias_zero():
    """MAD-Lab's AutoEncoder re-initialises every Linear (encoder mixers included, no
    ``_no_reinit`` check): weights N(0, 0.02), biases zero; embeddings N(0, 0.02)."""
    torch.manual_seed(0)
    model = build_model(tiny(["mamba", "swiglu"], d_model=64), VOCAB, L, backbone="autoencoder")
    assert abs(model.embed.weight.std().item() - 0.02) < 0.002
    for name, m in linears(model):
        if m.weight.numel() >= 1024:
            assert abs(m.weight.std().item() - 0.02) < 0.003, name
        assert m.bias is None or not m.bias.any(), name
    assert not model.stack.blocks[0].mixer.dt_proj.bias.any()  # zeroed, as MAD-Lab's code does


# -- row 5: biases -------------------------------------------------------------------------

def test_head_and_attention_projections_have_bias():
    model = build_model(load_spec(str(ARCH / "transformer.yaml")), VOCAB, L)
    assert model.head.bias is not None and model.head.bias.shape == (VOCAB,)
    for block in model.stack.blocks[::2]:
        assert block.mixer.qkv.bias is not None and block.mixer.out.bias is not None
    ae = build_model(tiny(["mlp"]), VOCAB, L, backbone="autoencoder")
    assert ae.head.bias is not None
    # the head bias shifts the logits (it is used, not only present)
    x = torch.randint(0, VOCAB, (2, L))
    with torch.no_grad():
        before = model(x)
        model.head.bias.add_(1.0)
        torch.testing.assert_close(model(x), before + 1.0)


# -- row 6: the autoencoder ----------------------------------------------------------------

def test_autoencoder_structure_is_mad_labs():
    model = build_model(tiny(["mlp"]), VOCAB, L, backbone="autoencoder")
    assert isinstance(model.stack.final_norm, nn.Identity)  # no encoder final norm
    kinds = [type(m) for m in model.decoder]
    assert kinds == [nn.RMSNorm, nn.Linear, nn.GELU, nn.RMSNorm, nn.Linear, nn.GELU]
    assert all(m.in_features == m.out_features == 32 for m in model.decoder if isinstance(m, nn.Linear))
    assert isinstance(model.head_norm, nn.RMSNorm) and model.head.in_features == 32


def test_autoencoder_decoder_position_table_is_fairseqs():
    """MAD-Lab's posemb_sincos_1d: H = d/2 frequencies 10000^(-i/(H-1)), [sin | cos] halves."""
    model = build_model(tiny(["mlp"], d_model=8), VOCAB, L, backbone="autoencoder")
    table = model.decoder_pos
    assert table.shape == (L, 8)
    for p in (0, 1, 5, 11):
        for i in range(4):
            f = 10000.0 ** (-i / 3)
            assert table[p, i].item() == pytest.approx(math.sin(p * f), abs=1e-6)
            assert table[p, 4 + i].item() == pytest.approx(math.cos(p * f), abs=1e-6)


def test_autoencoder_forward_hand_checked():
    """With the encoder's mixer silenced, the output is
    Linear(norm(GELU(Linear(norm(GELU(Linear(norm(e_last + pos)))))))) at every position."""
    torch.manual_seed(3)
    model = build_model(tiny(["mlp"]), VOCAB, L, backbone="autoencoder")
    with torch.no_grad():
        for p in model.parameters():  # non-trivial norm weights and biases
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
        model.stack.blocks[0].mixer.fc2.weight.zero_()
        model.stack.blocks[0].mixer.fc2.bias.zero_()
    tokens = torch.randint(0, VOCAB, (2, L))
    n1, l1, _, n2, l2, _ = model.decoder

    def rms(x, norm):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight

    z = model.embed.weight[tokens[:, -1]][:, None] + model.decoder_pos[:L]  # no final norm
    h = F.gelu(rms(z, n1) @ l1.weight.T + l1.bias)
    h = F.gelu(rms(h, n2) @ l2.weight.T + l2.bias)
    expected = rms(h, model.head_norm) @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(tokens), expected, rtol=1e-5, atol=1e-5)


# -- row 8: Hyena's positional features ----------------------------------------------------

@pytest.mark.parametrize("layer", [{"type": "hyena"},
                                   {"type": "hyena", "mode": "outer-product", "head_dim": 8,
                                    "inner_factor": 1, "filter_order": 2}])
def test_hyena_positional_features_train_with_weight_decay(layer):
    """MAD-Lab registers z as a parameter; its optimizer ignores the per-parameter lr / wd, so
    z trains at the global lr with weight decay: here z is one of the model's parameters (the
    trainer's AdamW takes model.parameters() with the run's weight decay)."""
    torch.manual_seed(0)
    model = build_model(tiny([layer]), VOCAB, L)
    filt = model.stack.blocks[0].mixer.filter
    assert isinstance(filt.z, nn.Parameter) and filt.z.requires_grad
    assert any(p is filt.z for p in model.parameters())
    assert "t" in dict(filt.named_buffers())  # t stays fixed
    tokens = torch.randint(0, VOCAB, (2, L))
    F.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten()).backward()
    assert filt.z.grad is not None and filt.z.grad.abs().sum() > 0
    # decoupled weight decay alone (zero gradient) shrinks z by (1 - lr * wd)
    z0 = filt.z.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5)
    opt.zero_grad(set_to_none=False)
    opt.step()
    torch.testing.assert_close(filt.z.detach(), z0 * (1 - 0.1 * 0.5))


# -- row 9: BaseConv's long filter ---------------------------------------------------------

def test_base_conv_long_filter_is_zoologys_current():
    from mad_bench.configs.primitives.base_conv import BaseConvConfig
    from mad_bench.primitives.sequence.base_conv import BaseConv

    torch.manual_seed(0)
    T, D = 10, 6
    m = BaseConv(BaseConvConfig(conv="long"), D, T)
    kinds = [type(x) for x in m.filter.mlp]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear]
    l1, _, l2 = m.filter.mlp
    assert (l1.in_features, l1.out_features, l2.out_features) == (3, 16, D) and l2.bias is not None
    assert "z" not in dict(m.named_parameters())  # Zoology's z does not train
    with torch.no_grad():
        l2.bias.add_(0.3)
    # positional features by hand: t, cos(2 pi f k / T), -sin(2 pi f k / T), f = 1e-4
    k = torch.arange(T, dtype=torch.float64)
    p = torch.stack([k / (T - 1), torch.cos(2 * math.pi * 1e-4 * k / T),
                     -torch.sin(2 * math.pi * 1e-4 * k / T)], -1).float()
    h = torch.relu(p @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias  # no decay window
    torch.testing.assert_close(m.filter(T), h)
    # the layer: c_t = sum_s h_{t-s} x_s + x_t, y = c . (x W + b) + x
    x = torch.randn(2, T, D)
    c = torch.stack([sum(h[t - s] * x[:, s] for s in range(t + 1)) for t in range(T)], 1) + x
    expected = c * m.projection(x) + x
    torch.testing.assert_close(m(x), expected, rtol=1e-4, atol=1e-5)


# -- row 7 and item 2: the reference specs -------------------------------------------------

REFERENCE = ["transformer", "hyena", "mh-hyena", "mamba", "gla", "deltanet"]


def test_the_papers_mamba_is_four_mamba_layers():
    spec = load_spec(str(ARCH / "mamba.yaml"))
    assert [l.type for l in spec.all_layers] == ["mamba"] * 4
    variant = load_spec(str(ARCH / "mamba-swiglu.yaml"))
    assert [l.type for l in variant.all_layers] == ["mamba", "swiglu"] * 2
    assert not (ARCH / "mamba-only.yaml").exists()


def test_reference_specs_and_variants_say_what_they_are():
    for path in sorted(ARCH.glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# "), path.name
        if path.stem in REFERENCE:
            assert "MAD" in first and "Not" not in first, path.name
        else:
            assert first.startswith("# Not "), path.name


def test_shipped_specs_have_distinct_hashes():
    hashes = {}
    for path in sorted(ARCH.rglob("*.yaml")):
        h = load_spec(str(path)).spec_hash()
        assert h not in hashes, f"{path.name} builds the same model as {hashes.get(h)}"
        hashes[h] = path.name


def test_spec_hash_covers_the_model_version(monkeypatch):
    """A change to the model-building code that the spec text does not show must move the
    hash, or stored rows of the old model would be averaged with the new one."""
    spec = load_spec(str(ARCH / "transformer.yaml"))
    h = spec.spec_hash()
    monkeypatch.setattr(architecture, "MODEL_VERSION", architecture.MODEL_VERSION + 1)
    assert spec.spec_hash() != h
