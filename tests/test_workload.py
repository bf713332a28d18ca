"""The work a plan announces before it starts."""
from mad_bench.runner import plan
from mad_bench.spec import load_spec
from mad_bench.suite import expand, load_suite
from mad_bench.workload import describe, training_tokens


def test_full_mad_protocol_token_bound_by_hand():
    spec = load_spec("architectures/transformer.yaml")
    suite = load_suite("mad")
    requests = plan([spec], expand(suite), grid=suite.grid.points())
    assert len(requests) == 396
    by_hand = sum(6 * 200 * s.task_setting.num_train_examples * s.task_setting.seq_len
                  for s in expand(suite))
    assert training_tokens(requests) == by_hand
    line = describe(requests, "cuda", "ensemble")
    assert line.startswith("396 run(s)") and "ETA at most" in line and " h " in line
    assert "ETA" not in describe(requests, "cpu", "plain").split(";")[0]
