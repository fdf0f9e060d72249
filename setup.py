"""The one compiled piece: dagd._spawn (vfork + join the step's cgroup before exec).

optional=True: without a C compiler the package still installs, and steps join their cgroup
through a `sh` trampoline instead (one exec more per step); `dagctl daemon` says which.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """No run-time library path: the module needs only libc, and an interpreter built with
    -Wl,-rpath (pyenv) would otherwise leave its own prefix in the packaged file."""

    def build_extensions(self) -> None:
        self.compiler.linker_so = [a for a in self.compiler.linker_so if not a.startswith(("-Wl,-rpath", "-L"))]
        super().build_extensions()


setup(
    ext_modules=[Extension("dagd._spawn", ["dagd/_spawn.c"], optional=True, extra_compile_args=["-O2", "-Wall"])],
    cmdclass={"build_ext": BuildExt},
)
