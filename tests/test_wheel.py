"""A built wheel carries the shipped folders (architectures, suites, search spaces) and an
installed mad_bench finds them from any directory, not only from a checkout."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("architectures", "tasks", "search_spaces")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("mad_bench", *FOLDERS):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "_shipped"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", str(src), "-w", str(out)], capture_output=True, text=True)
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        pytest.skip("pip is not available")
    assert proc.returncode == 0, proc.stderr
    (whl,) = out.glob("mad_bench-*.whl")
    return whl


def test_wheel_carries_the_shipped_folders(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in FOLDERS:
        shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).glob("*.yaml")}
        assert shipped and {f"mad_bench/_shipped/{n}" for n in shipped} <= names, folder


def test_installed_package_finds_them_from_another_directory(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip install does with a pure-Python wheel
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import mad_bench, sys\n"
        "from mad_bench.shipped import shipped_dir\n"
        "from mad_bench.suite import load_suite\n"
        "from mad_bench.tune.space import load_space\n"
        "from mad_bench.cli import main\n"
        "assert mad_bench.__file__.startswith(sys.argv[1]), mad_bench.__file__\n"
        "assert all(str(shipped_dir(f)).startswith(sys.argv[1]) for f in ('tasks', 'architectures', 'search_spaces'))\n"
        "assert load_suite('mad-quick').name == 'mad-quick'\n"
        "assert load_space('search_spaces/mixer-per-slot.yaml').name == 'mixer-per-slot'\n"
        "sys.exit(main(['validate', 'architectures/transformer.yaml', 'mamba',\n"
        "               'architectures/zoology/based.yaml', 'zoology/based.yaml', 'zoology/based']))\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", code, str(site)], cwd=elsewhere, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "architectures/transformer.yaml: ok" in proc.stdout and "mamba: ok" in proc.stdout
    for name in ("architectures/zoology/based.yaml", "zoology/based.yaml", "zoology/based"):
        assert f"{name}: ok" in proc.stdout, proc.stdout  # nested shipped specs by name


def test_nested_shipped_specs_resolve_from_another_directory(tmp_path, monkeypatch):
    from mad_bench.shipped import shipped_dir, shipped_file

    monkeypatch.chdir(tmp_path)
    want = shipped_dir("architectures") / "zoology" / "based.yaml"
    for name in ("architectures/zoology/based.yaml", "zoology/based.yaml", "zoology/based"):
        assert shipped_file(name, "architectures") == want, name
    assert shipped_file("based", "architectures") == shipped_dir("architectures") / "based.yaml"
    assert shipped_file("zoology/nope", "architectures") == tmp_path.joinpath("zoology/nope").relative_to(tmp_path)
