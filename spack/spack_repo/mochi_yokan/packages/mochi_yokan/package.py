# Spack recipe of mochi-yokan, kept in the project's own repository (spack/README.md).
import os

from spack_repo.builtin.build_systems.cmake import CMakePackage

from spack.package import *

# The optional parts of the build: Spack variant -> (CMake option, what it adds).
# Each option of the top-level CMakeLists.txt (AUTO/ON/OFF) has exactly one variant
# here, and the recipe always passes ON or OFF, so a spec never depends on what
# happens to be installed on the build machine.
OPTIONAL_PARTS = {
    "python": ("ENABLE_PYTHON", "Python bindings (the mochi.yokan package)"),
    "lua": ("ENABLE_LUA", "Lua 5.4 scripting support"),
    "rocksdb": ("ENABLE_ROCKSDB", "RocksDB backend"),
    "leveldb": ("ENABLE_LEVELDB", "LevelDB backend"),
    "lmdb": ("ENABLE_LMDB", "LMDB backend"),
    "berkeleydb": ("ENABLE_BERKELEYDB", "Berkeley DB backend"),
    "gdbm": ("ENABLE_GDBM", "GDBM backend"),
    "tkrzw": ("ENABLE_TKRZW", "Tkrzw backend"),
}

# Run by the install-time check and by `spack test run`: import numpy and the package
# and do one put/get through a provider living in the same process. faulthandler turns a
# hang into a failure with a traceback instead of a stuck build.
PUT_GET_SCRIPT = """
import faulthandler
faulthandler.dump_traceback_later(120, exit=True)
import numpy  # a run dependency of the bindings: the run environment must provide it
from mochi.margo import Engine
from mochi.yokan.server import Provider
from mochi.yokan.client import Client
with Engine("tcp") as e:
    p = Provider(engine=e, provider_id=42, config='{"database":{"type":"map"}}')
    db = Client(e).make_database_handle(e.addr(), 42)
    db.put("k", "v")
    assert db.get("k") == b"v"
    del db, p
print("numpy", numpy.__version__, "and mochi.yokan put/get: ok")
"""


class MochiYokan(CMakePackage):
    """Yokan, the Mochi key/value storage service for HPC: providers own a database
    with a pluggable backend, clients reach them over RPC (UCX), with Python bindings."""

    homepage = "https://mochi.readthedocs.io/en/latest/yokan.html"
    # This project has no public remote yet: build it from a checkout with
    # `spack develop` (spack/README.md, spack/check.sh). The URL below is a
    # placeholder; do_fetch below turns its failure into that advice rather
    # than fetch upstream Yokan, which is a different code base.
    git = "https://example.invalid/mochi-yokan.git"

    license("BSD-3-Clause")

    version("main", branch="main")

    for _name, (_option, _what) in OPTIONAL_PARTS.items():
        variant(_name, default=False, description=f"Build {_what} ({_option})")
    # The loop variables would otherwise stay as class attributes (`_name` would
    # shadow Spack's own PackageBase._name).
    del _name, _option, _what

    depends_on("c", type="build")
    depends_on("cxx", type="build")
    depends_on("cmake@3.18:", type="build")
    depends_on("pkgconfig", type="build")

    # The minimum versions are the oldest ones built and tested (Debian 12's).
    depends_on("ucx@1.13:")
    # Its headers are included by yokan's public headers, hence build and link.
    depends_on("nlohmann-json@3:")
    # B-tree and hash set of the in-memory backends (linked privately).
    depends_on("abseil-cpp@20220623:")
    # libcrypto: HMAC-SHA256 and random nonces of the authenticated handshake.
    depends_on("openssl")

    # The C++ tests (YOKAN_BUILD_TESTS, run by `spack install --test=root`) use GoogleTest.
    depends_on("googletest", type="test")

    with when("+python"):
        extends("python")
        depends_on("python@3.8:", type=("build", "link", "run"))
        depends_on("py-pybind11@2.10:", type="build")
        # Also a test dependency, so that the install-time check can import it.
        depends_on("py-numpy", type=("run", "test"))

    depends_on("rocksdb", when="+rocksdb")
    depends_on("leveldb", when="+leveldb")
    depends_on("lmdb", when="+lmdb")
    depends_on("berkeley-db+cxx", when="+berkeleydb")
    depends_on("gdbm", when="+gdbm")
    depends_on("tkrzw", when="+tkrzw")
    # CMake finds it through pkg-config as lua5.4, which Spack's lua installs.
    depends_on("lua@5.4", when="+lua")

    def _pybind11_cmake_dir(self):
        """The directory holding pybind11Config.cmake of the py-pybind11 in the spec.

        Passing it explicitly keeps CMake from picking another pybind11 (for example one
        in /usr/include) when the chosen one is a pip-style install."""
        prefix = self.spec["py-pybind11"].prefix
        python = self.spec["python"].package
        candidates = [
            join_path(prefix, "share", "cmake", "pybind11"),  # CMake install (Spack-built)
            join_path(prefix, "lib", "cmake", "pybind11"),  # Debian/Ubuntu pybind11-dev
        ]
        # pip installs: the module's own copy, in the site dirs Spack puts on PYTHONPATH
        for site in dict.fromkeys([python.platlib, python.purelib]):
            candidates.append(join_path(prefix, site, "pybind11", "share", "cmake", "pybind11"))
        for directory in candidates:
            if os.path.isfile(join_path(directory, "pybind11Config.cmake")):
                return directory
        return None

    def cmake_args(self):
        args = [
            self.define(option, "ON" if self.spec.satisfies(f"+{name}") else "OFF")
            for name, (option, _) in OPTIONAL_PARTS.items()
        ]
        args.append(self.define("YOKAN_BUILD_TESTS", self.run_tests))
        if self.spec.satisfies("+python"):
            args.append(self.define("Python3_EXECUTABLE", self.spec["python"].command.path))
            # python_platlib: <prefix>/<the interpreter's platlib>, the directory that
            # `extends("python")` puts on PYTHONPATH for `spack load` and dependents.
            args.append(self.define("YOKAN_PYTHON_INSTALL_DIR", python_platlib))
            pybind11_dir = self._pybind11_cmake_dir()
            if pybind11_dir:
                args.append(self.define("pybind11_DIR", pybind11_dir))
        return args

    def do_fetch(self, mirror_only=False):
        """Fetch as usual, but say how to build when the placeholder URL fails."""
        if mirror_only:
            # Concretization probes mirrors for the branch's commit and expects a
            # plain FetchError when there is none: leave that path alone.
            return super().do_fetch(mirror_only)
        try:
            super().do_fetch(mirror_only)
        except SpackError as e:
            raise InstallError(
                f"cannot fetch the sources of {self.spec.format('{name}{@version}')}: "
                "this project has no public download location yet",
                "Build it from a checkout of the project instead, with `spack develop "
                "--no-clone --path <checkout> mochi-yokan@main` in an environment "
                f"(see spack/README.md). The fetch error was: {e}",
            ) from e

    def _run_put_get(self, extra_env=None):
        python = self.spec["python"].command
        out = python("-c", PUT_GET_SCRIPT, output=str, error=str, extra_env=extra_env or {})
        print(out)
        assert "put/get: ok" in out, out

    @run_after("install")
    @on_package_attributes(run_tests=True)
    def check_python_install(self):
        """Install-time check (--test=root): the installed bindings work."""
        if self.spec.satisfies("~python"):
            return
        paths = [python_platlib, os.environ.get("PYTHONPATH", "")]
        self._run_put_get({"PYTHONPATH": os.pathsep.join(p for p in paths if p)})

    def test_library(self):
        """the yokan shared library is installed"""
        libs = find_libraries("libyokan", root=self.prefix, shared=True, recursive=True)
        assert libs, f"libyokan not found under {self.prefix}"

    def test_python_put_get(self):
        """import mochi.yokan and do one put/get through an in-process provider"""
        if self.spec.satisfies("~python"):
            raise SkipTest("built without +python")
        self._run_put_get()
