"""The work a plan announces before it starts."""
from mad_bench.run.plan import plan, requests_of
from mad_bench.spec import load_spec
from mad_bench.suite import expand, load_suite
from mad_bench.workload import describe, training_tokens


def test_full_mad_protocol_token_bound_by_hand():
    spec = load_spec("architectures/transformer.yaml")
    suite = load_suite("mad")
    requests = requests_of(plan([spec], expand(suite), suite.grid.lr, suite.grid.weight_decay))
    assert len(requests) == 396
    by_hand = sum(6 * 200 * s.task_setting.num_train_examples * s.task_setting.seq_len
                  for s in expand(suite))
    assert training_tokens(requests) == by_hand
    line = describe(requests, "cuda", "ensemble")
    assert line.startswith("396 run(s)") and "ETA at most" in line and " h " in line
    assert "ETA" not in describe(requests, "cpu", "plain").split(";")[0]


def test_eta_uses_the_specs_rate_and_the_measured_early_stop_share():
    suite = load_suite("mad")
    settings = expand(suite, ["in-context-recall"], baseline_only=True)
    fast, slow = (load_spec(f"architectures/{n}.yaml") for n in ("transformer", "hyena"))
    req_fast = requests_of(plan([fast], settings, suite.grid.lr, suite.grid.weight_decay))
    req_slow = requests_of(plan([slow], settings, suite.grid.lr, suite.grid.weight_decay))
    hours = lambda line: line.split("ETA at most ")[1].split()[0:2]  # noqa: E731
    assert hours(describe(req_fast, "cuda", "ensemble")) != hours(describe(req_slow, "cuda", "ensemble"))
    # stored runs of the transformer on this task trained a quarter of their epochs
    stored = [{"spec": "transformer", "task": "in-context-recall", "status": "ok", "epochs": 200,
               "epochs_run": 50}]
    line = describe(req_fast, "cuda", "ensemble", stored)
    assert "expected" in line and "early stops" in line
    assert "expected" not in describe(req_slow, "cuda", "ensemble", stored)
    custom = load_spec({"name": "my-mixer", "d_model": 128, "layers": ["attention", "swiglu"]})
    assert "my-mixer at the transformer's rate" in describe(requests_of(plan([custom], settings)), "cuda", "ensemble")
