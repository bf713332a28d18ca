"""Several GPUs on a CPU: the local executor's placement with a faked GPU count, the plan a
bench prints, the option errors, and Ray's logical GPUs (one task per assigned device)."""
import json
import random
import threading
from collections import Counter
from pathlib import Path

import pytest

import placement_jobs
from mad_bench.cli import main
from mad_bench.run.executors import make_executor
from mad_bench.run.executors.gpus import FAKE_ENV, GpuPlan, plan_local, visible_gpus
from mad_bench.run.executors.local import LocalExecutor
from mad_bench.run.executors.loop import drive_jobs
from mad_bench.run.options import ExecOptions
from mad_bench.workload import makespan

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "architectures/transformer.yaml")


def records(log: Path) -> dict[tuple[int, int], dict]:
    out = {}
    for p in log.glob("*.json"):
        r = json.loads(p.read_text())
        out[(r["number"], r["attempt"])] = r
    return out


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at one time."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = best = 0
    for _, step in edges:
        now += step
        best = max(best, now)
    return best


def test_least_loaded_gpu_and_never_more_than_k(tmp_path):
    """Threads of the driver on 3 GPUs, 2 jobs per GPU at most, 5 at once: in a random order of
    endings, every job starts on a least-loaded GPU (as this test counts) and none holds 3."""
    plan = GpuPlan(ids=("0", "1", "2"), indices=(0, 1, 2), per_gpu=2, workers=5, seen=3)
    ex = LocalExecutor(parallel=5, in_process=True, device="cuda", plan=plan)
    gates = {n: threading.Event() for n in range(24)}
    load, running, placed = Counter(), {}, []
    rng = random.Random(0)
    log = tmp_path

    def started(job):  # the executor calls run() in a thread: wait for its device
        for _ in range(200):
            p = log / f"{job.number}.0.json"
            if p.is_file() and p.read_text():
                return json.loads(p.read_text())["device"]
            threading.Event().wait(0.01)
        raise AssertionError(f"job {job.number} did not start")

    for n in range(24):
        if len(running) == 5:  # end a random running job first
            end = rng.choice(sorted(running))
            gates[end].set()
            while True:
                done = [e for e in ex.events(5.0) if e[0] == "done"]
                if done:
                    break
            for e in done:
                load[running.pop(e[1].number)] -= 1
        job = placement_jobs.RecordJob(n, str(log), events=gates)
        least = min(load[f"cuda:{g}"] for g in range(3))
        ex.submit(job)
        device = started(job)
        assert load[device] == least, (n, device, dict(load))
        load[device] += 1
        assert load[device] <= 2
        running[n] = device
        placed.append(device)
    for g in gates.values():
        g.set()
    assert Counter(placed[:5]) == {"cuda:0": 2, "cuda:1": 2, "cuda:2": 1}
    assert set(placed) == {"cuda:0", "cuda:1", "cuda:2"}


def test_workers_pinned_evenly_and_a_killed_one_retried_on_another_gpu(tmp_path, monkeypatch):
    """3 faked GPUs x --jobs-per-gpu 2: six worker processes, each seeing only its GPU; the
    worker of job 0 kills itself and its retry runs on another GPU, never a third on one."""
    monkeypatch.setenv(FAKE_ENV, "3")
    jobs = [placement_jobs.RecordJob(n, str(tmp_path), seconds=0.5,
                                     kill_attempts=(0,) if n == 0 else ()) for n in range(7)]
    feed = iter(jobs)
    done, failed, retried = [], [], []
    with make_executor(ExecOptions(executor="local", device="cuda", jobs_per_gpu=2)) as ex:
        assert ex.capacity() == 6 and not ex.in_process
        assert "6 processes on 3 of 3 GPU(s) seen (0, 1, 2), 2 per GPU" in ex.describe()
        drive_jobs(ex, lambda: next(feed, None), lambda j, r: done.append(r),
                   lambda j, why: failed.append(why),
                   on_retry=lambda j, why: retried.append((j.number, why)), poll=0.1)
    assert not failed and [n for n, _ in retried] == [0] and "SIGKILL" in retried[0][1]
    rec = records(tmp_path)
    assert [rec[(n, 0)]["cvd"] for n in range(6)] == ["0", "1", "2", "0", "1", "2"]
    assert {r["device"] for r in rec.values()} == {"cuda"}
    assert rec[(0, 1)]["cvd"] != rec[(0, 0)]["cvd"]
    assert sorted((r["number"], r["attempt"]) for r in done) == sorted(
        k for k in rec if k != (0, 0))
    for gpu in "012":  # the killed attempt ends at once; the others ran start..end
        spans = [(r["start"], r["end"]) for r in done if r["cvd"] == gpu]
        assert most_at_once(spans) <= 2, gpu


@pytest.mark.parametrize("args,message", [
    (("cpu", None, 2), "--jobs-per-gpu 2: needs a CUDA device, not --device cpu"),
    (("auto", None, 2), "--jobs-per-gpu 2: no GPU seen"),
    (("cuda", 7, 2), "--workers 7: 3 GPU(s) x --jobs-per-gpu 2 hold 6 worker(s)"),
    (("cuda:3", None, None), "--device cuda:3: 3 GPU(s) seen (valid: cuda:0 .. cuda:2)"),
])
def test_plan_errors_name_the_option(args, message):
    device, workers, k = args
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_local(device, workers, k, 1, gpus=["0", "1", "2"] if device != "auto" else [])


def test_plan_follows_visible_devices(monkeypatch):
    """Ids come from the driver's CUDA_VISIBLE_DEVICES (physical GPUs 5 and 7 here); workers
    default to GPUs x K; --device cuda:1 pins every worker to the second visible GPU."""
    plan = plan_local("auto", None, 3, 1, gpus=["5", "7"])
    assert (plan.ids, plan.per_gpu, plan.workers) == (("5", "7"), 3, 6)
    assert plan_local("cuda", 3, None, 1, gpus=["5", "7"]).per_gpu == 2
    one = plan_local("cuda:1", None, None, 1, gpus=["5", "7"])
    assert (one.ids, one.indices, one.workers) == (("7",), (1,), 1)
    assert plan_local("cpu", None, None, 4, gpus=["5"]).ids == ()
    monkeypatch.setenv(FAKE_ENV, "4")
    assert visible_gpus() == ["0", "1", "2", "3"]
    monkeypatch.setenv(FAKE_ENV, "two")
    with pytest.raises(ValueError, match=FAKE_ENV):
        visible_gpus()


def test_makespan_by_hand():
    # in order, each job to the GPU that frees first: 5->A, 3->B, 4->B (7), 2->A (7)
    assert makespan([5, 3, 4, 2], 2) == 7
    assert makespan([5, 3, 4, 2], 1) == 14
    assert makespan([5, 3], 8) == 5


@pytest.mark.parametrize("argv,message", [
    (["--jobs-per-gpu", "2", "--device", "cpu"], "error: --jobs-per-gpu 2: needs a CUDA device"),
    (["--jobs-per-gpu", "2", "--gpus-per-trial", "0.25"], "error: --jobs-per-gpu 2 and --gpus-per-trial 0.25 disagree"),
    (["--jobs-per-gpu", "0"], "argument --jobs-per-gpu: must be >= 1"),
])
def test_bad_jobs_per_gpu_is_one_line(tmp_path, capsys, argv, message):
    try:
        code = main(["bench", SPEC, "--suite", "smoke", "--results", str(tmp_path), *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message if message.startswith("error") else "error: "), err
    assert message.removeprefix("error: ") in err[0]
    assert not list(tmp_path.glob("runs/*.parquet")), "nothing ran"


class Planned(Exception):
    pass


def test_bench_prints_the_plan(tmp_path, capsys, monkeypatch, two_lr_suite):
    """On a faked 2-GPU machine the plan names the GPUs, the workers per GPU and the jobs before
    anything trains (the training itself is left out: it stops right after the plan)."""
    import mad_bench.run.driver

    def stop(*args, **kwargs):
        raise Planned

    monkeypatch.setenv(FAKE_ENV, "2")
    monkeypatch.setattr(mad_bench.run.driver, "execute", stop)
    with pytest.raises(Planned):
        main(["bench", SPEC, "--suite", str(two_lr_suite), "--results", str(tmp_path),
              "--no-progress", "--engine", "plain"])
    out = capsys.readouterr().out
    assert "to do: 2 run(s) in 2 job(s) to train" in out
    assert "executor local (2 processes on 2 of 2 GPU(s) seen (0, 1), 1 per GPU)" in out
    # `run` is one job: one worker, a thread of this process (its progress bar shows)
    with pytest.raises(Planned):
        main(["run", SPEC, "--task", "in-context-recall", "--suite", str(two_lr_suite),
              "--results", str(tmp_path), "--no-progress", "--engine", "plain"])
    assert "executor local (1 threads on 2 of 2 GPU(s) seen (0, 1), at most 1 per GPU)" in capsys.readouterr().out


def test_eta_spreads_the_jobs_over_the_gpus():
    """The full MAD protocol of one spec: 66 ensemble jobs; on 8 GPUs the ETA is the busiest
    GPU's share, between the even split and the even split plus the largest job."""
    import re

    from mad_bench.run.plan import plan, requests_of
    from mad_bench.spec import load_spec
    from mad_bench.suite import expand, load_suite
    from mad_bench.workload import REFERENCE_RATES, describe, training_tokens

    suite = load_suite("mad")
    groups = plan([load_spec(SPEC)], expand(suite), suite.grid.lr, suite.grid.weight_decay)
    requests = requests_of(groups)  # the ensemble engine's jobs: one grid each

    def hours(line):
        value, unit = re.search(r"ETA at most ([\d.]+) (h|min)", line).groups()
        return float(value) / (60 if unit == "min" else 1)

    one = describe(requests, "cuda", "ensemble", gpus=1, jobs=groups)
    eight = describe(requests, "cuda", "ensemble", gpus=8, jobs=groups)
    assert f"in {len(groups)} job(s)" in eight and "on 8 GPUs" in eight and "tok/s per GPU" in eight
    assert "GPUs" not in one
    rate = REFERENCE_RATES[("cuda", "ensemble")]
    largest = max(training_tokens(g) for g in groups) / rate / 3600
    assert hours(one) / 8 * 0.95 <= hours(eight) <= (hours(one) / 8 + largest) * 1.05
