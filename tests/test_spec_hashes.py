"""The spec hash of every shipped spec, pinned: moving or refactoring the spec models (the
config classes, their defaults, the serialisers) must not change a hash, or stored results
would no longer match their specs. A deliberate model change bumps MODEL_VERSION and this table
(the hashes were computed with the code before the configs moved to mad_bench.configs)."""
from pathlib import Path

import pytest

from mad_bench.spec import load_spec

ARCH = Path(__file__).resolve().parents[1] / "architectures"

HASHES = {
    "base-conv.yaml": "288956a87a08c9ba",
    "based-swa.yaml": "285deab25221ae20",
    "based.yaml": "d0d1a8f8bcc11ece",
    "deltanet.yaml": "4ba3b18aeee021a3",
    "gated-deltanet.yaml": "0bc938b5f8b9ab8a",
    "gla.yaml": "f444a1a176d450da",
    "gru.yaml": "64f1f17d6bdc640d",
    "h3.yaml": "1d10d24f3c0d8a1d",
    "hyena.yaml": "b0351059316f8887",
    "linear-attention.yaml": "37dad4713e3e2338",
    "lm/deltanet-20m.yaml": "14ee3fd30eb92359",
    "lm/gla-20m.yaml": "6c30e84e50192762",
    "lm/hyena-20m.yaml": "2ed8bec34b89e644",
    "lm/mamba-20m.yaml": "c99fdbd4145fcc97",
    "lm/mh-hyena-20m.yaml": "6f9afef2d3e66dd0",
    "lm/transformer-125m.yaml": "f8531dfb0bbda645",
    "lm/transformer-20m.yaml": "72f95c71ddd5e683",
    "lstm.yaml": "40d94a175d4e1520",
    "mamba-swiglu.yaml": "2c8b696ebbdfffc9",
    "mamba.yaml": "9732b7203855b7ee",
    "mamba2.yaml": "d9013bc8ea3cdb46",
    "mh-hyena.yaml": "ca650062eff52917",
    "mlstm.yaml": "c869241fbca51117",
    "retnet.yaml": "ea746d6f208cfe1c",
    "rwkv6.yaml": "f3a76da6d20a638b",
    "short-conv.yaml": "adc3a7986bca8c44",
    "sliding-window-attention.yaml": "88dedcce4b972995",
    "slstm.yaml": "5f0eed397a280fd4",
    "striped-mamba-attention.yaml": "980c2cb5f4d4144d",
    "swiglu-only.yaml": "2b854a82fc0107e4",
    "transformer-moe.yaml": "471449d81a50b235",
    "transformer.yaml": "1f48fbeac34e2af7",
    "xlstm-hybrid.yaml": "5e61a196fa6f13ac",
    "zoology/attention.yaml": "26da5261fb404145",
    "zoology/base-conv.yaml": "ffc7b5b40b420880",
    "zoology/based.yaml": "1588f9ab62f4bfbc",
    "zoology/gated-deltanet.yaml": "dc44f88f7570aec9",
    "zoology/h3.yaml": "e13eb7356e92226b",
    "zoology/hyena.yaml": "afa84aba331d759c",
    "zoology/mamba.yaml": "aca20a188a837043",
}


def test_every_shipped_spec_is_pinned():
    shipped = sorted(p.relative_to(ARCH).as_posix() for p in ARCH.rglob("*.yaml"))
    assert shipped == sorted(HASHES)


@pytest.mark.parametrize("name", sorted(HASHES))
def test_spec_hash_unchanged(name):
    assert load_spec(ARCH / name).spec_hash() == HASHES[name]
