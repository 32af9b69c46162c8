"""The C toolchain: finding gcc, target flags, the CPU features a build needs, and compiling."""

from __future__ import annotations

import logging
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

logger = logging.getLogger(__name__)

TARGETS = ("portable", "native")
OPT_LEVELS = ("O2", "O3")  # the gcc -O levels offered
# No -ffast-math ever: it would let gcc assume no NaN (our "missing") and reorder the sums. No
# FMA contraction either (gcc's default in GNU C): the request kernel's feature formulas must
# round after every operation, as numpy does, to build rows bit-identical to numpy's.
BASE_CFLAGS = ("-fPIC", "-std=gnu99", "-ffp-contract=off")
LDFLAGS = ("-shared", "-lm")

# gcc's predefined instruction-set macros and the /proc/cpuinfo flag each needs, for the
# extensions gcc may emit on its own (vector, FMA, bit manipulation). Intrinsic-only ones (aes,
# sha, rdrand, rdseed, xsave, ...) are left out: the generated code calls no intrinsics, and
# hypervisors hide some of them from cpuinfo (this VM's cpuinfo lacks rdseed that gcc sees).
_MACRO_CPU_FLAGS = {
    "__MMX__": "mmx",
    "__SSE__": "sse",
    "__SSE2__": "sse2",
    "__SSE3__": "pni",
    "__SSSE3__": "ssse3",
    "__SSE4_1__": "sse4_1",
    "__SSE4_2__": "sse4_2",
    "__POPCNT__": "popcnt",
    "__LZCNT__": "abm",
    "__MOVBE__": "movbe",
    "__F16C__": "f16c",
    "__FMA__": "fma",
    "__BMI__": "bmi1",
    "__BMI2__": "bmi2",
    "__AVX__": "avx",
    "__AVX2__": "avx2",
    "__AVXVNNI__": "avx_vnni",
    "__AVX512F__": "avx512f",
    "__AVX512DQ__": "avx512dq",
    "__AVX512CD__": "avx512cd",
    "__AVX512BW__": "avx512bw",
    "__AVX512VL__": "avx512vl",
    "__AVX512IFMA__": "avx512ifma",
    "__AVX512VBMI__": "avx512vbmi",
    "__AVX512VBMI2__": "avx512_vbmi2",
    "__AVX512VNNI__": "avx512_vnni",
    "__AVX512BITALG__": "avx512_bitalg",
    "__AVX512VPOPCNTDQ__": "avx512_vpopcntdq",
    "__AVX512BF16__": "avx512_bf16",
    "__AVX512FP16__": "avx512_fp16",
    "__GFNI__": "gfni",
}


class ToolchainError(Exception):
    """The C compiler is missing or failed; the message carries its output."""


def find_cc(cc: str) -> str | None:
    """Absolute path of the C compiler, or None when it is not installed."""
    return shutil.which(cc)


def _run(args: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ToolchainError(f"cannot run {args[0]}: {exc}") from exc
    if done.returncode != 0:
        raise ToolchainError(
            f"{' '.join(args)} exited with {done.returncode}:\n{done.stderr.strip()[-4000:]}"
        )
    return done.stdout


def cc_version(cc: str) -> str:
    """The compiler's version string, e.g. "gcc 12.2.0"."""
    return f"{Path(cc).name} {_run([cc, '-dumpfullversion', '-dumpversion']).strip()}"


def target_flags(target: str) -> list[str]:
    """The -march/-mtune flags of a target: portable x86-64 baseline, or this host's CPU."""
    if target == "portable":
        return ["-march=x86-64", "-mtune=generic"]
    if target == "native":
        return ["-march=native"]
    raise ValueError(f"unknown target {target!r}; expected one of {list(TARGETS)}")


def cflags(target: str, opt_level: str) -> list[str]:
    """All compile flags for a target and optimisation level."""
    if opt_level not in OPT_LEVELS:
        raise ValueError(f"unknown optimisation level {opt_level!r}; expected one of {OPT_LEVELS}")
    return [f"-{opt_level}", *BASE_CFLAGS, *target_flags(target)]


def resolved_march(cc: str, target: str) -> str:
    """The CPU model gcc resolves the target to (e.g. "znver3" for native)."""
    for line in _run([cc, *target_flags(target), "-Q", "--help=target"]).splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "-march=":
            return fields[1]
    return target_flags(target)[0].removeprefix("-march=")


def required_cpu_flags(cc: str, target: str) -> list[str]:
    """The /proc/cpuinfo flags that code built for this target may use (from gcc's macros)."""
    defines = _run([cc, *target_flags(target), "-dM", "-E", "-x", "c", "/dev/null"])
    flags = set()
    for line in defines.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "#define" and fields[1] in _MACRO_CPU_FLAGS:
            flags.add(_MACRO_CPU_FLAGS[fields[1]])
    return sorted(flags)


def compile_shared(
    cc: str,
    sources: list[Path],
    include_dirs: list[Path],
    flags: list[str],
    out: Path,
    jobs: int = 2,
) -> None:
    """Compiles each source to an object (in parallel), then links them into shared library out."""
    includes = [f"-I{d}" for d in include_dirs]
    objects = [out.parent / f"{source.stem}.{i}.o" for i, source in enumerate(sources)]

    def compile_one(pair: tuple[Path, Path]) -> None:
        source, obj = pair
        _run([cc, *flags, *includes, "-c", str(source), "-o", str(obj)])

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(compile_one, zip(sources, objects, strict=True)))
    _run([cc, *flags, *[str(o) for o in objects], *LDFLAGS, "-o", str(out)])
    logger.debug("linked %s from %d sources", out, len(sources))
