# Shared fixtures of the Python tests (run by ctest with PYTHONPATH=BUILD/python
# and SGDSTAB_CLI=the program, see python/CMakeLists.txt).
import json
import math
import os
import subprocess

import numpy as np
import pytest


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("SGDSTAB_CLI")
    if not path or not os.path.exists(path):
        pytest.skip("SGDSTAB_CLI does not name the sgdstab program (run through ctest)")

    def run(*args, expect=0):
        p = subprocess.run([path, *map(str, args)], capture_output=True, text=True)
        assert p.returncode == expect, f"sgdstab {' '.join(map(str, args))}: exit {p.returncode}\n{p.stderr}"
        out = json.loads(p.stdout)
        if isinstance(out, dict) and "performance" in out:  # the machine, which the library's results do not carry
            assert {"cpu", "blas", "blas_threads"} <= set(out.pop("performance"))
        return out

    return run


def jacobian(n, c, p, seed, spread=1.0):
    """A Gaussian (n c) x p Jacobian, each sample's rows scaled by its own factor (a clustered spectrum)."""
    rng = np.random.default_rng(seed)
    j = rng.standard_normal((n * c, p))
    scale = np.exp(spread * rng.uniform(-1, 1, n))
    return j * np.repeat(scale, c)[:, None]


def assert_same(a, b, rel=1e-12, skip=("seconds", "apply_seconds"), where=""):
    """Two JSON values equal: the same keys, equal strings, numbers to rel."""
    if isinstance(a, dict):
        assert isinstance(b, dict), where
        assert set(a) - set(skip) == set(b) - set(skip), f"{where}: keys {sorted(set(a) ^ set(b))} differ"
        for k in a:
            if k not in skip:
                assert_same(a[k], b[k], rel, skip, f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, rel, skip, f"{where}[{i}]")
    elif isinstance(a, bool) or a is None or isinstance(a, str):
        assert a == b, f"{where}: {a!r} != {b!r}"
    else:
        assert isinstance(b, (int, float)) and not isinstance(b, bool), f"{where}: {a!r} vs {b!r}"
        if math.isfinite(a) or math.isfinite(b):
            assert abs(a - b) <= rel * max(abs(a), abs(b), 1e-300), f"{where}: {a!r} != {b!r}"
