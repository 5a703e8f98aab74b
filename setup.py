"""Build engine._C with CMake (see CMakeLists.txt); everything else is plain setuptools."""

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Configure and build the native module with CMake, then place it where setuptools expects it."""

    def build_extension(self, ext: Extension) -> None:
        out = Path(self.get_ext_fullpath(ext.name)).resolve()
        build_dir = ROOT / "build" / f"cmake-py{sys.version_info.major}{sys.version_info.minor}"
        build_dir.mkdir(parents=True, exist_ok=True)
        args = [
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-DSEGRT_OUTPUT_DIR={out.parent}",
            f"-DSEGRT_CUDA={os.environ.get('SEGRT_CUDA', 'AUTO')}",
            f"-DSEGRT_SANITIZE={'ON' if os.environ.get('SEGRT_SANITIZE') == '1' else 'OFF'}",
        ]
        if os.environ.get("CUDAARCHS"):
            args.append(f"-DCMAKE_CUDA_ARCHITECTURES={os.environ['CUDAARCHS']}")
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), *args], check=True)
        jobs = os.environ.get("SEGRT_BUILD_JOBS", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "--build", str(build_dir), "-j", jobs], check=True)


setup(ext_modules=[CMakeExtension("engine._C")], cmdclass={"build_ext": CMakeBuild})
