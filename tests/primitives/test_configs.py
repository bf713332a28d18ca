"""Config validation of the primitives, in one place: a bad setting is an error that names the
field (``check(d_model)`` for settings that depend on the width, pydantic for the rest)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from mad_bench.primitives.channel.moe import MoEConfig
from mad_bench.primitives.sequence.based import BasedConfig
from mad_bench.primitives.sequence.deltanet import DeltaNetConfig
from mad_bench.primitives.sequence.gated_deltanet import GatedDeltaNetConfig
from mad_bench.primitives.sequence.gla import GatedLinearAttentionConfig
from mad_bench.primitives.sequence.gru import GRUConfig
from mad_bench.primitives.sequence.h3 import H3Config
from mad_bench.primitives.sequence.hyena import HyenaConfig
from mad_bench.primitives.sequence.linear_attention import LinearAttentionConfig
from mad_bench.primitives.sequence.lstm import LSTMConfig
from mad_bench.primitives.sequence.mamba import MambaConfig
from mad_bench.primitives.sequence.mamba2 import Mamba2Config
from mad_bench.primitives.sequence.mlstm import MLSTMConfig
from mad_bench.primitives.sequence.retnet import RetNetConfig
from mad_bench.primitives.sequence.rwkv6 import RWKV6Config
from mad_bench.primitives.sequence.short_conv import ShortConvConfig
from mad_bench.primitives.sequence.slstm import SLSTMConfig


@pytest.mark.parametrize(
    "cfg,field",
    [
        (Mamba2Config(headdim=48), "headdim"),
        (Mamba2Config(headdim=16, n_groups=3), "n_groups"),
        (Mamba2Config(A_init_min=20.0), "A_init_min"),
        (MambaConfig(dt_min=0.5, dt_max=0.1), "dt_min"),
        (MLSTMConfig(n_heads=5), "n_heads"),
        (SLSTMConfig(n_heads=3), "n_heads"),
        (LinearAttentionConfig(n_heads=5), "n_heads"),
        (GatedLinearAttentionConfig(n_heads=5), "n_heads"),
        (GatedLinearAttentionConfig(expand_v=0.3), "expand_v"),
        (GatedLinearAttentionConfig(chunk_size=24, sub_chunk_size=16), "sub_chunk_size"),
        (RetNetConfig(n_heads=3), "n_heads"),
        (RetNetConfig(n_heads=32), "rotary"),  # key head dim 1 is odd
        (DeltaNetConfig(expand_k=0.75, n_heads=16), "expand_k"),
    ],
)
def test_check_names_the_field(cfg, field):
    with pytest.raises(ValueError, match=field):
        cfg.check(32)


def test_check_errors_name_the_field():
    with pytest.raises(ValueError, match="d_state"):
        H3Config(d_state=5).check(32)
    with pytest.raises(ValueError, match="head_dim"):
        H3Config(head_dim=3).check(32)
    with pytest.raises(ValueError, match="num_heads"):
        HyenaConfig(mode="outer-product", num_heads=2).check(32)
    with pytest.raises(ValueError, match="order"):
        HyenaConfig(mode="outer-product", order=3).check(32)
    with pytest.raises(ValueError, match="num_heads"):
        HyenaConfig(num_heads=3).check(32)
    with pytest.raises(ValueError, match="proj_groups"):
        HyenaConfig(proj_groups=5, inner_factor=1).check(32)
    with pytest.raises(ValueError, match="emb_dim"):
        HyenaConfig(emb_dim=4).check(32)
    with pytest.raises(ValueError, match="n_heads"):
        BasedConfig(n_heads=3).check(32)
    with pytest.raises(ValueError, match="expand_v"):
        GatedDeltaNetConfig(expand_v=0.3).check(32)
    with pytest.raises(ValueError, match="head_dim"):
        RWKV6Config(head_dim=12).check(32)
    with pytest.raises(ValueError, match="top_k"):
        MoEConfig(top_k=9).check(128)
    with pytest.raises(ValueError, match="d_hidden"):
        LSTMConfig(d_hidden=16, out_proj=False).check(32)
    with pytest.raises(ValueError, match="d_hidden"):
        GRUConfig(d_hidden=16, out_proj=False).check(32)


def test_validation_errors_name_the_field():
    with pytest.raises(ValidationError, match="dt_rank"):
        MambaConfig(dt_rank=0)
    with pytest.raises(ValidationError, match="d_state"):
        Mamba2Config(d_state=0)
    with pytest.raises(ValidationError, match="bogus"):
        MLSTMConfig(bogus=1)
    with pytest.raises(ValidationError, match="kernel_size"):
        ShortConvConfig(kernel_size=0)


def test_validation_rejects_unknown_fields_and_bad_values():
    with pytest.raises(ValidationError):
        HyenaConfig(order=1)
    with pytest.raises(ValidationError):
        MoEConfig(bogus=1)
    with pytest.raises(Exception):
        GatedLinearAttentionConfig(heads=4)
    with pytest.raises(Exception):
        LinearAttentionConfig(feature_map="softmax")
    with pytest.raises(Exception):
        DeltaNetConfig(conv_size=1)


def test_written_values_and_defaults_are_kept():
    assert MambaConfig(dt_rank=3).dt_rank == 3
    assert (MambaConfig().d_state, MambaConfig().d_conv, MambaConfig().expand) == (4, 4, 2)
