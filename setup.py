"""Build hook: generate the gRPC code from proto/ before packaging (it is never committed)."""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        spec = importlib.util.spec_from_file_location(
            "proto_generate", Path(__file__).parent / "proto" / "generate.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.generate()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
