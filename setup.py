# Builds the extension sgdstab._core with CMake for `pip install .`
# (pyproject.toml holds the metadata). The C++ build is the project's own
# (CMakeLists.txt, SGDSTAB_PYTHON=ON); only the target sgdstab_python is built.
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        src = Path(__file__).resolve().parent
        # SGDSTAB_CMAKE_BUILD_DIR: a build folder of this tree already
        # configured with SGDSTAB_PYTHON=ON for this Python; its
        # sgdstab_python target is brought up to date and packaged, instead of
        # configuring and compiling everything a second time (the test
        # command's check of `pip install .`, scripts/test.sh).
        reuse = os.environ.get("SGDSTAB_CMAKE_BUILD_DIR")
        if reuse:
            build = Path(reuse).resolve()
            if not (build / "CMakeCache.txt").is_file():
                raise RuntimeError(f"SGDSTAB_CMAKE_BUILD_DIR={reuse}: not a configured CMake build folder")
        else:
            build = Path(self.build_temp).resolve() / "cmake"
            build.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                            "-DSGDSTAB_PYTHON=ON", "-DSGDSTAB_BUILD_TESTS=OFF", "-DSGDSTAB_BUILD_BENCH=OFF",
                            "-DSGDSTAB_WITH_TORCH=OFF", "-DSGDSTAB_INSTALL=OFF",
                            f"-DPython3_EXECUTABLE={sys.executable}"], check=True)
        jobs = str(os.cpu_count() or 1)
        subprocess.run(["cmake", "--build", str(build), "--target", "sgdstab_python", "-j", jobs], check=True)
        built = next((build / "python" / "sgdstab").glob("_core*.so"))
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(built), str(target))


setup(ext_modules=[CMakeExtension("sgdstab._core")], cmdclass={"build_ext": CMakeBuild})
