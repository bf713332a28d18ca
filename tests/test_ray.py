"""The Ray executor: unreachable address, a two-node loopback cluster, a node stopped mid-search."""
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml

from mad_bench.cli import main

ray = pytest.importorskip("ray")
RAY = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
# auth off: a token file left in ~/.ray by an earlier Ray (Ray 2.60 writes one) must not turn the
# test cluster's head to token mode while its clients send none
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_memory_monitor_refresh_ms": "0",
       "RAY_AUTH_MODE": "disabled"}
TINY = {"name": "tiny", "d_model": 16, "layers": [{"type": "attention", "n_heads": 2, "rotary_dim": 2},
                                                   {"type": "swiglu", "d_inner": 32}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_address_fails_fast(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text(yaml.safe_dump({"name": "s", "base": TINY}))
    t0 = time.time()
    assert main(["search", str(space), "--suite", "smoke", "--trials", "1", "--results", str(tmp_path),
                 "--executor", "ray", "--address", f"127.0.0.1:{_free_port()}"]) == 2
    assert time.time() - t0 < 10
    assert "cannot reach a Ray cluster" in capsys.readouterr().err


def test_two_node_cluster_with_node_stopped(tmp_path):
    port = _free_port()
    address = f"127.0.0.1:{port}"
    space = tmp_path / "s.yaml"
    space.write_text(yaml.safe_dump({
        "name": "s", "base": TINY, "d_model": [16, 32, 48, 64],
        "slots": [{"index": 0, "choices": ["attention", "short-conv"]}], "scoring": {"mode": "fixed"}}))
    node2 = None
    try:
        subprocess.run([RAY, "start", "--head", "--port", str(port), "--num-cpus", "1",
                        "--node-ip-address", "127.0.0.1", "--object-store-memory", "100000000",
                        "--include-dashboard", "false", "--disable-usage-stats"],
                       check=True, env=ENV, capture_output=True, timeout=120)
        node2 = subprocess.Popen([RAY, "start", "--address", address, "--num-cpus", "1",
                                  "--node-ip-address", "127.0.0.1", "--resources", '{"node2": 1}',
                                  "--object-store-memory", "100000000", "--block"],
                                 env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cmd = [sys.executable, "-m", "mad_bench.cli", "search", str(space), "--suite", "smoke",
               "--tasks", "in-context-recall", "--epochs", "1", "--results", str(tmp_path / "res"),
               "--study", "r", "--executor", "ray", "--address", address, "--sampler", "random",
               "--max-retries", "3"]
        deadline = time.time() + 60  # wait for the second node to join
        while time.time() < deadline:
            out = subprocess.run([RAY, "status", "--address", address], env=ENV, capture_output=True, text=True)
            if "2.0 CPU" in out.stdout or "0.0/2.0 CPU" in out.stdout:
                break
            time.sleep(1)
        # a search on both nodes
        first = subprocess.run(cmd + ["--trials", "4"], env=ENV, capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "2 at once" in first.stdout
        # stop the worker node mid-search (once the search runs on both nodes, however long a
        # loaded machine takes to get there): the search still completes
        t0 = time.time()
        proc = subprocess.Popen(cmd + ["--trials", "10", "--resume"], env={**ENV, "PYTHONUNBUFFERED": "1"},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []

        def read():  # each line with when it came, from the search's start
            for line in proc.stdout:
                lines.append(f"{time.time() - t0:6.1f} s  {line}")

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.time() + 120
        while not any(" s  search " in line for line in lines) and time.time() < deadline:
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.5)
        assert any("2 at once" in line for line in lines), "".join(lines)
        time.sleep(3)  # its first two trials are on their nodes
        lines.append(f"{time.time() - t0:6.1f} s  (test: stopping the worker node)\n")
        node2.terminate()
        node2.wait(60)
        lines.append(f"{time.time() - t0:6.1f} s  (test: the worker node has stopped)\n")
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:  # a hang says where it stood
            proc.kill()
            proc.wait()
            reader.join(10)
            pytest.fail("the search did not end within 300 s of the node stopping:\n" + "".join(lines))
        reader.join(10)
        out = "".join(lines)
        print(out)  # the search's log: shown when a check below fails, or with -rP
        assert proc.returncode == 0, out
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        study = optuna.load_study(study_name="r", storage=JournalStorage(
            JournalFileBackend(str(tmp_path / "res" / "r" / "journal.log"))))
        assert sum(t.state.name == "COMPLETE" for t in study.trials) >= 9
    finally:
        if node2 is not None and node2.poll() is None:
            node2.kill()
        subprocess.run([RAY, "stop", "--force"], env=ENV, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the tests below (starting one is seconds), with 4 logical
    GPUs on the CPU; executors leave a caller's Ray running."""
    for k, v in ENV.items():
        os.environ.setdefault(k, v)
    ray.init(num_cpus=2, num_gpus=4, object_store_memory=100_000_000, include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_bench_on_embedded_ray_with_both_engines(tmp_path, two_lr_suite, capsys, local_ray):
    """`bench --executor ray`: plain runs and ensemble grids as Ray tasks give the local rows."""
    import pandas as pd

    from mad_bench.results import ResultsStore

    suite = two_lr_suite
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    base = ["bench", str(spec), "--suite", str(suite), "--device", "cpu", "--no-progress"]
    assert main(base + ["--results", str(tmp_path / "local")]) == 0
    ref = ResultsStore(tmp_path / "local").load().set_index("run_key").sort_index()
    for engine in ("plain", "ensemble"):  # on the caller's Ray: left running
        out = tmp_path / engine
        assert main(base + ["--results", str(out), "--executor", "ray", "--engine", engine]) == 0
        assert f"engine {engine}, executor ray (embedded" in capsys.readouterr().out
        assert ray.is_initialized()
        got = ResultsStore(out).load().set_index("run_key").sort_index()
        assert list(got.index) == list(ref.index) and list(got.columns) == list(ref.columns)
        assert (got["status"] == "ok").all()
        pd.testing.assert_series_equal(got["test_acc"], ref["test_acc"], atol=1e-4, rtol=0)


def test_fractional_gpus_spread_over_every_gpu_and_each_task_sees_its_own(tmp_path, local_ray):
    """Ray's 4 logical GPUs: four jobs at --gpus-per-trial 0.5 are widened to a whole GPU each
    (Ray alone would put them on two GPUs, two each), so they spread over all four; every task
    sees exactly its assigned GPU and trains on `cuda` whatever index was asked."""
    import placement_jobs
    from mad_bench.run.executors import make_executor
    from mad_bench.run.executors.loop import drive_jobs
    from mad_bench.run.options import ExecOptions

    ray.cloudpickle.register_pickle_by_value(placement_jobs)  # the workers cannot import tests/
    try:
        feed = iter([placement_jobs.RecordJob(i, str(tmp_path), wait_for=4) for i in range(4)])
        got, failed = [], []
        with make_executor(ExecOptions(executor="ray", gpus_per_job=0.5, cpus_per_job=0.5, device="cuda:3"),
                           jobs=4) as ex:
            assert ex.capacity() == 4 and "4 at once on 4 GPU(s)" in ex.describe()
            assert "1 GPU (--gpus-per-trial 0.5, widened" in ex.describe()
            drive_jobs(ex, lambda: next(feed, None), lambda j, r: got.append(r),
                       lambda j, why: failed.append(why), poll=0.1)
        assert ray.is_initialized()
    finally:
        ray.cloudpickle.unregister_pickle_by_value(placement_jobs)
    assert not failed and len(got) == 4
    for r in got:  # one device each, the one Ray assigned, named plain cuda
        assert r["ray_gpu_ids"] and [r["cvd"]] == r["ray_gpu_ids"] and r["device"] == "cuda"
    assert sorted(r["cvd"] for r in got) == ["0", "1", "2", "3"]


def test_lost_broker_and_a_task_on_a_gone_node_end_no_job_and_hang_nothing(tmp_path, local_ray, monkeypatch):
    """The broker dies: jobs go on, their reports lost, and a new broker serves later jobs. A
    task whose node is gone while Ray has not failed it comes back as died within seconds (Ray's
    view of the nodes is faked: this instance has one node, which must stay up)."""
    import placement_jobs
    from mad_bench.run.executors import ray_executor
    from mad_bench.run.executors.ray_executor import RayExecutor

    ray.cloudpickle.register_pickle_by_value(placement_jobs)
    try:
        with RayExecutor(parallel=2, cpus_per_trial=0.5) as ex:
            reporter = placement_jobs.RecordJob(0, str(tmp_path), wait_for=2, reports=3)
            stuck = placement_jobs.RecordJob(1, str(tmp_path), wait_for=2, seconds=300)
            ex.submit(reporter)
            ex.submit(stuck)
            deadline = time.time() + 60
            while len(list(tmp_path.glob("*.json"))) < 2 and time.time() < deadline:
                assert not ex.events(0.2)
            old = ex.broker
            ray.kill(old, no_restart=True)
            events, deadline = [], time.time() + 60
            while not events and time.time() < deadline:
                events = [e for e in ex.events(0.5) if e[0] != "report"]
            assert [(e[0], e[1].number) for e in events] == [("done", 0)], events
            assert events[0][2]["pruned"] and not any(events[0][2]["pruned"])
            assert ex.broker is not old and ray.get(ex.broker.ping.remote(), timeout=30)
            # the stuck task's node "goes": no answer from Ray, the driver's watch ends it
            monkeypatch.setattr(ray_executor, "LOST_GRACE", 1.0)
            monkeypatch.setattr(ray_executor, "NODE_POLL", 0.2)
            monkeypatch.setattr(ray, "nodes", lambda: [])
            t0, events = time.time(), []
            while not events and time.time() - t0 < 30:
                events = [e for e in ex.events(0.2) if e[0] != "report"]
            assert [(e[0], e[1].number) for e in events] == [("died", 1)], events
            assert "is gone" in events[0][2] and time.time() - t0 < 10
    finally:
        ray.cloudpickle.unregister_pickle_by_value(placement_jobs)
