"""Compiled models: recurrent form equals parallel form, gradients reach every parameter."""
from typing import Literal

import pytest
import torch

from mad_bench import build_model, list_primitives, load_spec
from mad_bench.primitives import REGISTRY

# Parameters that make a primitive's defaults fit the tiny test width (d_model 32).
SMALL = {"attention": {"n_heads": 4}}
SEQ = list_primitives()["sequence"]
VOCAB, L = 13, 19


def tiny_spec(layers, **kw):
    return load_spec({"name": "tiny", "d_model": 32, "layers": layers, **kw})


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", SEQ)
def test_step_equals_parallel(name):
    torch.manual_seed(0)
    layer = {"type": name, **SMALL.get(name, {})}
    model = build_model(tiny_spec([layer, layer]), vocab_size=VOCAB, max_len=L).eval()
    tokens = torch.randint(0, VOCAB, (3, L))
    with torch.no_grad():
        parallel = model(tokens)
        state = model.init_state(batch_size=3)
        steps = []
        for t in range(L):
            logits_t, state = model.step(tokens[:, t], state)
            steps.append(logits_t)
    assert rel_err(torch.stack(steps, 1), parallel) < 1e-4


@pytest.mark.parametrize("name", SEQ)
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(1)
    layer = {"type": name, **SMALL.get(name, {})}
    model = build_model(tiny_spec([layer, layer]), vocab_size=VOCAB, max_len=L)
    tokens = torch.randint(0, VOCAB, (2, L))
    loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), tokens.flatten())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.parametrize("name", list_primitives()["channel"])
def test_channel_mixers_in_a_model(name):
    model = build_model(tiny_spec([{"type": "attention", "n_heads": 4}, name]), VOCAB, L)
    tokens = torch.randint(0, VOCAB, (2, L))
    logits = model(tokens)
    assert logits.shape == (2, L, VOCAB) and torch.isfinite(logits).all()
    state = model.init_state(2)
    logits_0, _ = model.step(tokens[:, 0], state)
    torch.testing.assert_close(logits_0, logits[:, 0], rtol=1e-4, atol=1e-5)


def test_pre_and_post_norm_and_position_embeddings():
    tokens = torch.randint(0, VOCAB, (2, L))
    for kw in ({"norm_position": "post"}, {"position_embedding": "sincos"},
               {"position_embedding": "learned", "tie_embeddings": True, "norm": "layernorm"}):
        model = build_model(tiny_spec([{"type": "attention", "n_heads": 4}, "mlp"], **kw), VOCAB, L).eval()
        with torch.no_grad():
            parallel = model(tokens)
            state = model.init_state(2)
            steps = []
            for t in range(L):
                out, state = model.step(tokens[:, t], state)
                steps.append(out)
        assert rel_err(torch.stack(steps, 1), parallel) < 1e-4, kw
    tied = build_model(tiny_spec(["mlp"], tie_embeddings=True), VOCAB, L)
    assert tied.head.weight is tied.embed.weight


def test_hand_checked_identity_stack():
    """A post-norm-free stack whose mixer outputs zero reduces to embedding -> norm -> head."""
    model = build_model(tiny_spec(["mlp"]), VOCAB, L)
    with torch.no_grad():
        mlp = model.stack.blocks[0].mixer
        mlp.fc2.weight.zero_()
        mlp.fc2.bias.zero_()
    tokens = torch.randint(0, VOCAB, (2, L))
    emb = model.embed.weight[tokens]
    expected = model.head(emb * torch.rsqrt(emb.pow(2).mean(-1, keepdim=True) + 1e-5)
                          * model.stack.final_norm.weight)
    torch.testing.assert_close(model(tokens), expected)


def test_autoencoder_backbone():
    spec = tiny_spec([{"type": "attention", "n_heads": 4}, "swiglu"])
    model = build_model(spec, VOCAB, L, backbone="autoencoder")
    tokens = torch.randint(0, VOCAB, (2, L))
    logits = model(tokens)
    assert logits.shape == (2, L, VOCAB)
    # the code is the last position only: changing an earlier token changes the output only
    # through the encoder, changing nothing leaves it equal
    torch.testing.assert_close(model(tokens), logits)
    with pytest.raises(TypeError, match="no token-by-token form"):
        model.init_state(2)


def test_backbone_mismatch_is_a_clear_error():
    spec = tiny_spec(["mlp"], backbone="lm")
    with pytest.raises(ValueError, match="backbone 'lm' but the task needs 'autoencoder'"):
        build_model(spec, VOCAB, L, backbone="autoencoder")


def test_too_long_input_is_a_clear_error():
    model = build_model(tiny_spec(["mlp"]), VOCAB, 8)
    with pytest.raises(ValueError, match="exceeds max_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_registry_kinds_and_docs():
    prims = list_primitives()
    assert set(prims) == {"sequence", "channel"}
    for name, entry in REGISTRY.items():
        assert entry.module.__doc__, f"{name} has no docstring"
        assert entry.config.model_fields["type"].default == name


def test_config_and_module_registries_agree():
    """The torch-free config registry and the module registry name the same primitives, in the
    same order, with the same kind; a config's has_triton is its module's (checked at import)."""
    from mad_bench.configs.registry import CONFIGS

    assert list(CONFIGS) == list(REGISTRY)
    for name, entry in REGISTRY.items():
        assert CONFIGS[name] is entry.config and entry.kind == entry.config.kind == entry.module.kind
        assert getattr(entry.config, "has_triton", False) == getattr(entry.module, "has_triton", False)


def test_register_refuses_a_config_the_config_registry_lacks():
    from mad_bench.configs.primitives.base import ChannelMixerConfig
    from mad_bench.primitives import register

    class StrayConfig(ChannelMixerConfig):
        type: Literal["stray"] = "stray"

    with pytest.raises(TypeError, match="not the config of 'stray' in mad_bench.configs.registry"):
        register(StrayConfig)


# -- width-dependent defaults ---------------------------------------------------------------

def _registered():
    from mad_bench.primitives import REGISTRY

    return sorted(REGISTRY)


@pytest.mark.parametrize("name", _registered())
def test_bare_primitive_validates_at_every_width(name):
    """Defaults that depend on the width (heads, head sizes, rotary dims) follow d_model: a bare
    name is valid at every width from 2 to 512, with MAD's defaults kept at d_model 128."""
    from mad_bench import load_spec

    for d in range(2, 513):
        spec = load_spec({"name": "t", "d_model": d, "layers": [name]})
        spec.layers[0].check(d)
    at_128 = load_spec({"name": "t", "d_model": 128, "layers": [name]}).layers[0]
    assert at_128 == type(at_128)(type=name), "MAD's defaults are kept where they fit"


@pytest.mark.parametrize("name", _registered())
@pytest.mark.parametrize("d_model", [32, 40, 100, 512])
def test_bare_primitive_builds_and_runs(name, d_model):
    import torch

    from mad_bench import build_model, load_spec

    spec = load_spec({"name": "t", "d_model": d_model, "layers": [name]})
    model = build_model(spec, vocab_size=8, max_len=8, backbone="lm")
    assert model(torch.randint(0, 8, (1, 8))).shape == (1, 8, 8)


def test_written_values_are_kept_and_checked():
    from mad_bench import SpecError, load_spec

    spec = load_spec({"name": "t", "d_model": 32, "layers": ["attention", "swiglu"]})
    assert (spec.layers[0].n_heads, spec.layers[0].rotary_dim) == (16, 2)
    assert load_spec({"name": "t", "d_model": 40, "layers": ["attention"]}).layers[0].n_heads == 10
    written = load_spec({"name": "t", "d_model": 32, "layers": [{"type": "attention", "n_heads": 4}]})
    assert (written.layers[0].n_heads, written.layers[0].rotary_dim) == (4, 8)
    with pytest.raises(SpecError, match=r"rotary_dim=8 must be even and <= head dim 2"):
        load_spec({"name": "t", "d_model": 32, "layers": [{"type": "attention", "rotary_dim": 8}]})
    with pytest.raises(SpecError, match=r"n_heads=16 must divide d_model=40"):
        load_spec({"name": "t", "d_model": 40, "layers": [{"type": "attention", "n_heads": 16}]})
    again = load_spec(spec.to_dict())
    assert again == spec and again.spec_hash() == spec.spec_hash(), "a dumped spec reloads as itself"
