"""First-hour mistakes at the ``madbench`` command: each is one line naming the flag or file, exit 2."""
from pathlib import Path

import pytest
import torch

from mad_bench.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "architectures/transformer.yaml")


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("extra", [[], ["--workers", "2"]])
def test_unknown_device_is_one_line(tmp_path, capsys, extra):
    cmd = "run" if not extra else "bench"
    args = [cmd, SPEC, "--suite", "smoke", "--device", "gpu", "--results", str(tmp_path), *extra]
    if cmd == "run":
        args += ["--task", "memorization"]
    assert main(args) == 2
    line = one_line_error(capsys)
    assert "--device 'gpu'" in line and "cpu, cuda, cuda:N" in line
    assert not (tmp_path / "runs").exists(), "nothing ran"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_unavailable_cuda_is_one_line(tmp_path, capsys, device):
    assert main(["run", SPEC, "--task", "memorization", "--suite", "smoke", "--device", device,
                 "--results", str(tmp_path)]) == 2
    assert f"--device {device}: CUDA is not available" in one_line_error(capsys)


def test_unavailable_mps_is_one_line(tmp_path, capsys):
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    assert main(["run", SPEC, "--task", "memorization", "--suite", "smoke", "--device", "mps",
                 "--results", str(tmp_path)]) == 2
    assert "--device mps: no Apple GPU" in one_line_error(capsys)


@pytest.mark.parametrize("argv,flag", [
    (["bench", SPEC, "--workers", "0"], "--workers/--parallel"),  # one option, two names
    (["info", SPEC, "--seq-len", "-5"], "--seq-len"),
    (["info", SPEC, "--vocab-size", "0"], "--vocab-size"),
    (["run", SPEC, "--task", "memorization", "--epochs", "0"], "--epochs"),
])
def test_non_positive_counts_are_refused(capsys, argv, flag):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    line = one_line_error(capsys)
    assert f"argument {flag}: must be >= 1" in line and "--help" in line


def test_validate_names_every_bad_file_and_goes_on(tmp_path, capsys):
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    assert main(["validate", str(png), SPEC, str(tmp_path / "missing.yaml")]) == 2
    out, err = capsys.readouterr()
    assert f"{SPEC}: ok" in out
    err = err.strip().splitlines()
    assert err == [f"{png}: not a text file (YAML or JSON, UTF-8 encoded)",
                   f"{tmp_path / 'missing.yaml'}: no such file"]


def test_validate_a_directory_validates_its_spec_files(tmp_path, capsys):
    assert main(["validate", str(ROOT / "architectures")]) == 0
    shipped = sorted((ROOT / "architectures").glob("*.yaml"))
    assert capsys.readouterr().out.count(": ok") == len(shipped)
    (tmp_path / "notes.txt").write_text("not a spec")
    assert main(["validate", str(tmp_path)]) == 2
    assert "no spec files" in one_line_error(capsys)


def test_every_command_and_option_has_help():
    parser = build_parser()
    assert "``" not in (parser.description or "")
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert command.description, f"madbench {name} --help has no description"
        for action in command._actions:
            if action.dest != "help":
                assert action.help, f"madbench {name} {'/'.join(action.option_strings) or action.dest}"
                if action.default not in (None, False) and action.option_strings:
                    assert "default" in action.help, f"madbench {name} {action.dest}: default not shown"


def test_default_suite_without_a_gpu_is_mad_quick(capsys):
    from mad_bench.suite import default_suite

    assert default_suite("cpu") == "mad-quick"
    assert "--suite mad" in capsys.readouterr().err
    assert default_suite("cuda") == "mad"


@pytest.mark.parametrize("argv", [["--help"], ["validate", "architectures/transformer.yaml"],
                                  ["schema"], ["results", "--results", "results/reference-cpu"],
                                  ["leaderboard", "--results", "results/reference-cpu"]],
                         ids=lambda a: a[0])
def test_reading_commands_do_not_import_torch(argv):
    """Help, validate and schema start without torch or pandas (the configs are apart from the
    modules), the results readers without torch: see benchmarks/startup.py for the times."""
    import subprocess
    import sys

    code = ("import sys, contextlib, io\nfrom mad_bench.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(sys.argv[1:])\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ("[]" if argv[0] in ("--help", "validate", "schema") else "['pandas']")


@pytest.mark.parametrize("extra,message", [
    (["--max-retries", "-1"], "--max-retries -1: not valid (valid: 0 or more)"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial 0: not valid (valid: > 0)"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial -1: not valid (valid: 0 or more)"),
    (["--address", "auto", "--executor", "local"], "--address auto: names a Ray cluster, not valid with --executor local"),
])
@pytest.mark.parametrize("command", ["bench", "tune"])
def test_bad_execution_options_are_one_line_on_every_command(tmp_path, capsys, command, extra, message):
    args = [command, SPEC, "--suite", "smoke", "--results", str(tmp_path), *extra]
    if command == "tune":
        args += ["--task", "memorization"]
    assert main(args) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "runs").exists(), "nothing ran"


def test_training_commands_share_one_set_of_execution_options():
    sub = next(a for a in build_parser()._actions if a.dest == "command")

    def options(command):
        group = next(g for g in sub.choices[command]._action_groups if g.title == "execution")
        return [s for a in group._group_actions for s in a.option_strings]

    assert "--engine" in options("run") and "--workers" in options("run")
    for command in ("bench", "tune", "search"):
        assert options(command) == options("run"), command
