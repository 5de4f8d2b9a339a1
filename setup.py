"""pip build: drives the CMake build and installs the compiled modules
(_common, _mode, _client, _server) and the shared core library they all link
inside the mochi.yokan package.

Environment knobs: CMAKE_ARGS (extra -D options, e.g. -DENABLE_ROCKSDB=OFF),
CMAKE_BUILD_PARALLEL_LEVEL (default: the number of CPUs).
"""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


# The compiled modules (bindings/CMakeLists.txt builds them all at once).
NATIVE_MODULES = ["_common", "_mode", "_client", "_server"]


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    _built = False

    def build_extension(self, ext):
        # One CMake build produces every compiled module: run it for the first.
        if self._built:
            return
        self._built = True
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent  # .../mochi/yokan
        prefix = out_dir.parent.parent  # the directory that holds 'mochi'
        build_dir = Path(self.build_temp).resolve() / "cmake"
        build_dir.mkdir(parents=True, exist_ok=True)
        import pybind11

        args = [
            f"-DCMAKE_INSTALL_PREFIX={prefix}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            "-DYOKAN_WHEEL=ON",
            "-DENABLE_PYTHON=ON",
            "-DCMAKE_BUILD_TYPE=Release",
        ]
        args += shlex.split(os.environ.get("CMAKE_ARGS", ""))
        ninja = shutil.which("ninja") if _has_ninja() else None
        generator = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []
        # A configuration left by an earlier pip run names the tools of that
        # run's build environment, which pip has deleted since (and maybe
        # another generator): configure afresh; compiled objects are kept.
        shutil.rmtree(build_dir / "CMakeFiles", ignore_errors=True)
        (build_dir / "CMakeCache.txt").unlink(missing_ok=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.check_call(["cmake", "-S", str(ROOT), "-B", str(build_dir), *generator, *args])
        subprocess.check_call(["cmake", "--build", str(build_dir), "-j", jobs])
        subprocess.check_call(["cmake", "--install", str(build_dir)])


def _has_ninja():
    try:
        subprocess.check_call(["ninja", "--version"], stdout=subprocess.DEVNULL)
        return True
    except (OSError, subprocess.CalledProcessError):
        return False


setup(
    packages=["mochi.yokan", "mochi.margo"],
    package_dir={"": "python"},
    # PEP 561: the markers and the stubs of the compiled modules ship with the code.
    package_data={"mochi.yokan": ["py.typed", "*.pyi"], "mochi.margo": ["py.typed"]},
    ext_modules=[CMakeExtension(f"mochi.yokan.{m}") for m in NATIVE_MODULES],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
