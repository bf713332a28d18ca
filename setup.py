"""Build step: the wheel carries the top-level ``architectures/``, ``tasks/`` and
``search_spaces/`` folders as ``mad_bench/_shipped/<folder>`` (see ``mad_bench/shipped.py``)."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
FOLDERS = ("architectures", "tasks", "search_spaces")


class BuildWithShippedFolders(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout
            return
        for folder in FOLDERS:
            target = Path(self.build_lib) / "mad_bench" / "_shipped" / folder
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / folder, target, ignore=shutil.ignore_patterns("__pycache__", ".*"))


setup(cmdclass={"build_py": BuildWithShippedFolders})
