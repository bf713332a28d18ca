"""Throughput of the MAD protocol: the plain sequential trainer vs the ensemble engine.

    python benchmarks/throughput.py --device cuda --max-steps 400        # GPU slice (minutes)
    python benchmarks/throughput.py --device cpu --quick                 # CI-sized (about a minute)

Runs a slice of the MAD protocol (by default the baseline setting of every task of
``tasks/mad.yaml``, the whole lr x wd grid, the suite's epochs) for the MAD default transformer
(``architectures/transformer.yaml``) and the paper's Mamba (``architectures/mamba.yaml``, 4 Mamba
layers; the figures in BENCHMARKS.md predate it and ran ``mamba-swiglu.yaml``), first with
the plain engine (``run.engines.PlainEngine``, one run after another), then with the ensemble
engine (``run.engines.EnsembleEngine``, one ensemble per grid), in the same process, and prints per
architecture and trainer:

* training tokens / s (tokens of the training set x epochs run, over the phase's wall clock);
* GPU utilisation (mean of ``torch.cuda.utilization`` or ``nvidia-smi`` sampled every 0.2 s;
  ``n/a`` where neither works);
* the extrapolated wall clock of the full MAD protocol (66 settings x 6 grid points): per
  task, seconds per unit of work measured on the slice, times the work of every setting of
  that task in ``tasks/mad.yaml`` at 200 epochs. One unit of work is one token of one epoch
  (training tokens + test tokens / 3, an eval token costing about a third of a training
  token) weighted by the per-token cost ``body_params + d_model x vocab`` (the output head
  grows with the vocabulary). A target setting is scaled from the slice setting of its task
  with the nearest ``seq_len``: linear scaling is an upper bound where small models are
  launch-bound, so add long-sequence settings to the slice (``--settings
  baseline,seq_len=1024``) to measure them instead. Two figures: ``no stop`` (every run 200
  epochs: an upper bound) and ``stop rate`` (scaled by the fraction of epochs the slice's runs
  actually ran before stopping at 0.999 accuracy; meaningful when the slice runs full epochs);
* full-protocol runs per hour (396 / the ``no stop`` estimate) and the speed-up.

Then it checks that the engine's per-run test accuracies equal the plain trainer's within
0.01 for runs where neither diverged, and prints PASS / FAIL. Results go to
``benchmarks/results/throughput-<tag>.json`` and ``.csv`` (summary) and ``-runs.csv``.

Slice size: ``--tasks``, ``--settings``, ``--epochs``, ``--max-steps`` (caps each run's
optimizer steps by lowering its epochs; the extrapolation uses the per-epoch cost), ``--grid``
(first N grid points). ``--quick``: CPU-sized settings (mad-quick's, 128 training and 64 test
examples, batch 32, 2 epochs).

Estimates from a slice that lacks some tasks cover only its tasks and are marked ``*``.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mad_bench import load_spec  # noqa: E402
from mad_bench.compiler import build_model  # noqa: E402
from mad_bench.run.engines import EnsembleEngine, PlainEngine  # noqa: E402
from mad_bench.run.plan import Grid, plan, requests_of  # noqa: E402
from mad_bench.run.rows import device_name  # noqa: E402
from mad_bench.train.ensemble import EngineInfo, EngineOptions  # noqa: E402
from mad_bench.suite import expand, load_suite  # noqa: E402
from mad_bench.train.trainer import resolve_device  # noqa: E402

ARCHS = {"transformer": ROOT / "architectures/transformer.yaml",
         "mamba": ROOT / "architectures/mamba.yaml"}
EVAL_COST = 1 / 3  # an evaluation token vs a training token (forward only)
TOLERANCE = 0.01


# ----------------------------------------------------------------------------- GPU utilisation
class UtilSampler:
    """Mean GPU utilisation over a phase, sampled in a thread (``None`` where unavailable)."""

    def __init__(self, device: torch.device, interval: float = 0.2):
        self.device, self.interval = device, interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.source = self._pick_source()

    def _pick_source(self):
        if self.device.type != "cuda":
            return None
        try:
            torch.cuda.utilization(self.device)
            return "torch"
        except Exception:  # noqa: BLE001 - pynvml missing
            pass
        if shutil.which("nvidia-smi"):
            try:
                self._smi()
                return "nvidia-smi"
            except Exception:  # noqa: BLE001
                pass
        return None

    def _smi(self) -> float:
        idx = self.device.index if self.device.index is not None else torch.cuda.current_device()
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                              "-i", str(idx)], capture_output=True, text=True, timeout=5, check=True)
        return float(out.stdout.strip().splitlines()[0])

    def _sample(self) -> float:
        return float(torch.cuda.utilization(self.device)) if self.source == "torch" else self._smi()

    def _loop(self):
        while not self._stop.wait(self.interval):
            try:
                self.samples.append(self._sample())
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self):
        if self.source:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


# ----------------------------------------------------------------------------- the slice
def slice_settings(args) -> list:
    tasks = args.tasks or None
    if args.quick:
        suite = load_suite("mad-quick")
        settings = expand(suite, tasks, overrides={"num_train_examples": 64, "num_test_examples": 64},
                          train_overrides={"epochs": args.epochs or 2, "batch_size": 32},
                          baseline_only=True)
    else:
        suite = load_suite("mad")
        train_over = {"epochs": args.epochs} if args.epochs else None
        settings = expand(suite, tasks, train_overrides=train_over)
        wanted = args.settings.split(",")
        if wanted != ["all"]:
            settings = [s for s in settings if s.setting_id in wanted]
    if args.max_steps:
        capped = []
        for s in settings:
            spe = math.ceil(s.task_setting.num_train_examples / s.training.batch_size)
            epochs = max(1, min(s.training.epochs, args.max_steps // spe))
            capped.append(dataclasses.replace(s, training=s.training.model_copy(update={"epochs": epochs})))
        settings = capped
    return settings


def body_params(spec, backbone: str) -> int:
    """Parameters besides the embedding and the output head (vocab-independent)."""
    V = 16
    model = build_model(spec, vocab_size=V, max_len=32, backbone=backbone)
    return model.num_params() - 2 * spec.d_model * V


def work_per_epoch(ts, bs: int, d_model: int, body: int) -> float:
    tokens = (ts.num_train_examples + EVAL_COST * ts.num_test_examples) * ts.seq_len
    return tokens * (body + d_model * ts.model_vocab_size())


# ----------------------------------------------------------------------------- phases
def run_phase(trainer: str, grids, device, options: EngineOptions, log_grid) -> tuple[list[dict], dict]:
    sampler = UtilSampler(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with sampler:
        done = []
        for grid in grids:
            if trainer == "plain":
                done += zip(grid, PlainEngine().rows(grid, str(device)))
            else:
                info = EngineInfo()
                done += zip(grid, EnsembleEngine(options).rows(grid, str(device), info=info))
                log_grid(grid, info)
        if device.type == "cuda":
            torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    rows = []
    for req, row in done:
        row["run_key"] = req.key
        rows.append(row)
    return rows, {"wall_s": wall, "gpu_util": sampler.mean, "util_source": sampler.source}


def warm_up(spec, device, options):
    """CUDA context, cuBLAS, kernels: paid here, not by the first measured phase."""
    s = slice_settings(argparse.Namespace(quick=True, tasks=["in-context-recall"], epochs=1,
                                          settings="baseline", max_steps=None))
    grid = Grid.build(spec, s[0], s[0].training, [(1e-3, 0.0), (5e-4, 0.1)])
    PlainEngine().rows(grid.select([0]), str(device))
    EnsembleEngine(options).rows(grid, str(device))


def extrapolate(rows: list[dict], requests, full_settings, arch_spec, bodies, grid_size: int, wall_total: float):
    """Per task: seconds per unit of work on the slice -> the full protocol (see module doc)."""
    by_key = {r.key: r for r in requests}
    d = arch_spec.d_model
    measured = defaultdict(lambda: [0.0, 0.0, 0, 0])  # (task, seq_len) -> wall, work, epochs run, epochs cfg
    wall_sum = sum(float(r.get("wall_s") or 0.0) for r in rows)
    scale = wall_total / wall_sum if wall_sum > 0 else 1.0  # phase overheads spread over runs
    for row in rows:
        req = by_key[row["run_key"]]
        ts = req.setting.task_setting
        body = bodies[ts.backbone]
        epochs_run = int(row.get("epochs_run") or 0)
        m = measured[(req.setting.task, ts.seq_len)]
        m[0] += float(row.get("wall_s") or 0.0) * scale
        m[1] += max(epochs_run, 1) * work_per_epoch(ts, req.training.batch_size, d, body)
        m[2] += epochs_run
        m[3] += req.training.epochs
    per_task = defaultdict(lambda: {"no_stop_s": 0.0, "stop_rate_s": 0.0, "settings": 0})
    for s in full_settings:
        ts = s.task_setting
        refs = [k for k in measured if k[0] == s.task]
        if not refs:
            continue
        ref = min(refs, key=lambda k: (abs(math.log(k[1] / ts.seq_len)), -k[1]))
        wall, work, e_run, e_cfg = measured[ref]
        spu = wall / work if work else 0.0
        full = grid_size * s.training.epochs * work_per_epoch(ts, s.training.batch_size, d, bodies[ts.backbone]) * spu
        stop_rate = e_run / e_cfg if e_cfg else 1.0
        t = per_task[s.task]
        t["no_stop_s"] += full
        t["stop_rate_s"] += full * stop_rate
        t["settings"] += 1
    return dict(per_task)


def compare(plain_rows, engine_rows) -> dict:
    eng = {r["run_key"]: r for r in engine_rows}
    diffs, mismatched, skipped = [], [], 0
    for p in plain_rows:
        e = eng.get(p["run_key"])
        if e is None:
            continue
        bad = {"diverged", "failed"}
        if p.get("status") in bad or e.get("status") in bad:
            skipped += 1
            continue
        dacc = abs(float(p["test_acc"]) - float(e["test_acc"]))
        diffs.append(dacc)
        if not dacc <= TOLERANCE:
            mismatched.append({"task": p["task"], "setting": p["setting"], "lr": p["lr"],
                               "weight_decay": p["weight_decay"], "plain": p["test_acc"],
                               "engine": e["test_acc"], "plain_epochs": p.get("epochs_run"),
                               "engine_epochs": e.get("epochs_run")})
    return {"compared": len(diffs), "skipped_diverged": skipped, "max_diff": max(diffs, default=0.0),
            "mismatches": mismatched, "pass": not mismatched and bool(diffs)}


def fmt(x, spec=".1f", na="n/a"):
    return na if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def confirm(args, device, options) -> int:
    """The whole protocol for one spec, as ``madbench bench SPEC --suite mad --engine ensemble``
    runs it: wall clock of this call, GPU time summed over every run in the store (several
    calls add up when a confirmation was resumed), the MAD score."""
    from mad_bench.results.aggregate import mad_score
    from mad_bench.results.store import ResultsStore
    from mad_bench.run.driver import prepare, run_plan
    from mad_bench.run.options import ExecOptions
    from mad_bench.workload import describe

    arch = args.archs[0]
    spec = load_spec(str(ARCHS.get(arch) or (ROOT / "architectures" / f"{arch}.yaml"
                                             if (ROOT / "architectures" / f"{arch}.yaml").exists() else arch)))
    suite = load_suite("mad")
    grids = plan([spec], expand(suite), suite.grid.lr, suite.grid.weight_decay)
    requests = requests_of(grids)
    store = ResultsStore(args.confirm_results)
    print(f"confirm: {spec.name}, full MAD protocol on {device_name(device)}; "
          + describe(prepare(grids, store, EnsembleEngine(options)).todo, device.type, "ensemble"), flush=True)

    def on_row(req, row, done, total):
        wall, setup = float(row.get("wall_s") or 0.0), float(row.get("setup_s") or 0.0)
        print(f"  [{done}/{total}] {req.describe()}: {row['status']} test_acc={row.get('test_acc')} "
              f"epochs={row.get('epochs_run')} setup={setup:.1f}s train={wall - setup:.1f}s", flush=True)

    t0 = time.perf_counter()
    rows, skipped = run_plan(grids, store, ExecOptions(device=str(device), engine="ensemble",
                                                       engine_options=options), on_row=on_row)
    wall = time.perf_counter() - t0
    stored = [r for r in (store.read(q.key) for q in requests) if r is not None]
    gpu_s = sum(float(r.get("wall_s") or 0.0) for r in stored)
    complete = len(stored) == len(requests)
    print(f"\nconfirm {spec.name}: {len(rows)} run(s) trained in this call ({wall / 3600:.2f} h wall), "
          f"{skipped} already in {store.root}; {len(stored)}/{len(requests)} runs stored, "
          f"{gpu_s / 3600:.2f} GPU-hours summed over their rows"
          + (f"; MAD score {mad_score(stored):.3f}" if complete else " (incomplete: run again to resume)"))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="CPU-sized slice (seconds per trainer)")
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), help=f"names ({', '.join(ARCHS)}) or spec paths")
    ap.add_argument("--tasks", nargs="+", default=None, help="tasks of the slice (default: all six)")
    ap.add_argument("--settings", default="baseline",
                    help="comma list of setting ids per task (baseline, seq_len=1024, ...) or 'all'")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the suite's)")
    ap.add_argument("--max-steps", type=int, default=None, help="cap optimizer steps per run (lowers epochs)")
    ap.add_argument("--grid", type=int, default=None, help="use only the first N grid points")
    ap.add_argument("--trainers", nargs="+", default=["plain", "engine"], choices=["plain", "engine"])
    ap.add_argument("--mode", default="auto", choices=["auto", "vmap", "loop"], help="engine forward mode")
    ap.add_argument("--no-capture", action="store_true", help="engine without CUDA graphs")
    ap.add_argument("--no-compact", action="store_true", help="engine keeps stopped members (masked)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads (0: leave; 1 with --quick on cpu)")
    ap.add_argument("--tag", default=None, help="output file tag (default: device + time)")
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--confirm", action="store_true",
                    help="run the whole MAD protocol (396 runs) for the first of --archs through the "
                         "engine, end to end, into --confirm-results (resumable), and report its GPU-hours")
    ap.add_argument("--confirm-results", default=str(ROOT / "results" / "reference-gpu"),
                    help="results store of --confirm (a killed confirmation resumes from it)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message=".*performance drop.*")
    if args.threads:
        torch.set_num_threads(args.threads)
    elif args.quick and args.device == "cpu":
        torch.set_num_threads(1)  # tiny ops: threads only contend (and CI machines are shared)
    try:
        device = resolve_device(args.device)
    except ValueError as exc:  # --device cuda on a machine without one: a line, not a traceback
        ap.error(str(exc))
    options = EngineOptions(mode=args.mode, capture=not args.no_capture, compact=not args.no_compact)

    if args.confirm:
        return confirm(args, device, options)
    settings = slice_settings(args)
    grid = load_suite("mad").grid.points()[: args.grid or None]
    full_settings = expand(load_suite("mad"))
    command = "python benchmarks/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"device: {device_name(device)} | torch {torch.__version__} | {command}")
    print(f"slice: {len(settings)} setting(s) x {len(grid)} grid point(s): "
          + ", ".join(f"{s.task}[{s.setting_id}] {s.training.epochs}ep" for s in settings))

    summary, all_rows, grid_infos, checks = [], [], [], {}
    for arch in args.archs:
        spec = load_spec(str(ARCHS.get(arch) or (ROOT / "architectures" / f"{arch}.yaml"
                                                 if (ROOT / "architectures" / f"{arch}.yaml").exists() else arch)))
        grids = [Grid.build(spec, s, s.training, grid) for s in settings]  # the first --grid points
        requests = requests_of(grids)
        bodies = {b: body_params(spec, b) for b in ("lm", "autoencoder")}
        t_warm = time.perf_counter()
        warm_up(spec, device, options)
        print(f"\n[{spec.name}] warm-up {time.perf_counter() - t_warm:.1f}s; {len(requests)} runs per trainer")
        phase_rows = {}
        for trainer in args.trainers:
            infos = []

            def log_grid(grid, info, infos=infos):
                infos.append({"task": grid.setting.task, "setting": grid.setting.setting_id,
                              **dataclasses.asdict(info)})

            rows, meas = run_phase(trainer, grids, device, options, log_grid)
            phase_rows[trainer] = rows
            for r in rows:
                r["arch"], r["trainer"] = spec.name, trainer
            all_rows += rows
            for i in infos:
                i["arch"] = spec.name
            grid_infos += infos
            by_key = {q.key: q for q in requests}
            tokens = sum(int(r.get("epochs_run") or 0) * by_key[r["run_key"]].setting.task_setting.num_train_examples
                         * by_key[r["run_key"]].setting.task_setting.seq_len for r in rows)
            per_task = extrapolate(rows, requests, full_settings, spec, bodies, len(load_suite("mad").grid.points()),
                                   meas["wall_s"])
            no_stop = sum(t["no_stop_s"] for t in per_task.values())
            stop_rate = sum(t["stop_rate_s"] for t in per_task.values())
            complete = {t for t in per_task} == {s.task for s in full_settings}
            if not complete:  # only the slice's tasks
                no_stop = no_stop or float("nan")
                stop_rate = stop_rate or float("nan")
            entry = {"arch": spec.name, "trainer": trainer, "runs": len(rows), **meas, "estimate_complete": complete,
                     "train_tokens": tokens, "tokens_per_s": tokens / meas["wall_s"],
                     "statuses": {k: sum(1 for r in rows if r.get("status") == k) for k in {r.get("status") for r in rows}},
                     "mad_est_h_no_stop": no_stop / 3600,
                     "mad_est_h_stop_rate": stop_rate / 3600,
                     "mad_est_tasks": {k: {kk: (vv / 3600 if kk.endswith("_s") else vv) for kk, vv in v.items()}
                                       for k, v in per_task.items()},
                     "full_runs_per_h": 396 / (no_stop / 3600) if complete and no_stop else None}
            if trainer == "engine":
                entry["engine_modes"] = sorted({i["mode"] for i in infos})
                entry["captured"] = all(i["captured_train"] for i in infos) if infos else False
                entry["fallbacks"] = sorted({i["fallback_reason"] for i in infos if i["fallback_reason"]})
                entry["capture_failures"] = sorted({i["capture_failure"] for i in infos if i["capture_failure"]})
                entry["notes"] = sorted({n for i in infos for n in i["notes"]})
            summary.append(entry)
            print(f"  {trainer:6s} {meas['wall_s']:8.1f}s  {entry['tokens_per_s']:,.0f} train tok/s  "
                  f"GPU {fmt(meas['gpu_util'])}%  statuses {entry['statuses']}"
                  + (f"  modes {entry['engine_modes']} captured={entry['captured']}" if trainer == "engine" else ""))
            for key in ("fallbacks", "capture_failures", "notes"):
                for line in entry.get(key, []):
                    print(f"    {key[:-1]}: {line}")
        if "plain" in phase_rows and "engine" in phase_rows:
            checks[spec.name] = c = compare(phase_rows["plain"], phase_rows["engine"])
            print(f"  equivalence {spec.name}: {'PASS' if c['pass'] else 'FAIL'} ({c['compared']} runs, "
                  f"max |d test_acc| {c['max_diff']:.4f}; {c['skipped_diverged']} diverged skipped)", flush=True)
            for mm in c["mismatches"][:6]:
                print(f"    mismatch: {mm}", flush=True)

    # ------------------------------------------------------------------ the table
    print()
    hdr = (f"{'arch':12s} {'trainer':7s} {'runs':>4s} {'wall s':>8s} {'train tok/s':>12s} {'GPU %':>6s} "
           f"{'MAD h (no stop)':>15s} {'MAD h (stop rate)':>17s} {'runs/h':>8s} {'speed-up':>8s}")
    print(hdr)
    print("-" * len(hdr))
    for e in summary:
        plain = next((p for p in summary if p["arch"] == e["arch"] and p["trainer"] == "plain"), None)
        speed = (plain["wall_s"] / e["wall_s"]) if plain and e["trainer"] == "engine" else None
        e["speedup_slice"] = speed
        star = "" if e["estimate_complete"] else "*"
        print(f"{e['arch']:12s} {e['trainer']:7s} {e['runs']:4d} {e['wall_s']:8.1f} {e['tokens_per_s']:12,.0f} "
              f"{fmt(e['gpu_util']):>6s} {fmt(e['mad_est_h_no_stop'], '.2f') + star:>15s} "
              f"{fmt(e['mad_est_h_stop_rate'], '.2f') + star:>17s} {fmt(e['full_runs_per_h'], '.3g'):>8s} "
              f"{(fmt(speed, '.1f') + 'x') if speed else '':>8s}")
    if any(not e["estimate_complete"] for e in summary):
        print("* the slice's tasks only (the full protocol's other tasks are not in the slice)")
    overall = None
    if checks:
        print()
        overall = all(c["pass"] for c in checks.values())
        for name, c in checks.items():
            verdict = "PASS" if c["pass"] else "FAIL"
            print(f"equivalence {name}: {verdict} ({c['compared']} runs compared, max |d test_acc| "
                  f"{c['max_diff']:.4f}, tolerance {TOLERANCE}; {c['skipped_diverged']} diverged skipped)")
            for mm in c["mismatches"][:10]:
                print(f"    mismatch: {mm}")
        print(f"equivalence: {'PASS' if overall else 'FAIL'}")

    # ------------------------------------------------------------------ files
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = args.tag or f"{device.type}-{time.strftime('%Y%m%d-%H%M%S')}"
    meta = {"device": device_name(device), "torch": torch.__version__, "python": platform.python_version(),
            "command": command, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "options": dataclasses.asdict(options),
            "slice": [{"task": s.task, "setting": s.setting_id, "epochs": s.training.epochs,
                       **s.task_setting.model_dump()} for s in settings], "grid": grid}
    (out_dir / f"throughput-{tag}.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "equivalence": checks, "equivalence_pass": overall,
         "grids": grid_infos, "runs": all_rows}, indent=2, default=str))
    cols = ["arch", "trainer", "runs", "wall_s", "tokens_per_s", "gpu_util", "mad_est_h_no_stop",
            "mad_est_h_stop_rate", "full_runs_per_h", "speedup_slice"]
    with open(out_dir / f"throughput-{tag}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(summary)
    run_cols = ["arch", "trainer", "task", "setting", "seq_len", "vocab_size", "num_train_examples", "lr",
                "weight_decay", "status", "stop_reason", "epochs_run", "best_epoch", "test_acc",
                "test_acc_macro", "test_loss", "train_acc", "wall_s", "error"]
    with open(out_dir / f"throughput-{tag}-runs.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=run_cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(all_rows)
    print(f"\nwrote {out_dir}/throughput-{tag}.json, .csv, -runs.csv")
    return 0 if overall in (None, True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
