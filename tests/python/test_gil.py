# The GIL is released while the library computes: another Python thread
# makes progress during a long solve.
import threading
import time

import sgdstab
from conftest import jacobian


def test_a_second_thread_runs_during_a_solve():
    g = sgdstab.Geometry.from_jacobian(jacobian(100, 1, 160, seed=8), 1)
    state = {"started": False, "done": False, "ticks": 0, "seconds": 0.0}

    def solve():
        state["started"] = True
        t0 = time.monotonic()
        r = sgdstab.threshold(g, 3, method="dense", dense_max_dimension=10**6)
        state["seconds"] = time.monotonic() - t0
        state["done"] = True
        assert r.converged

    worker = threading.Thread(target=solve)
    worker.start()
    while not state["started"]:
        time.sleep(0.0005)
    while not state["done"]:
        state["ticks"] += 1  # counted only while the solve runs
        time.sleep(0.001)
    worker.join()
    # Holding the GIL, the solve would leave this thread at most one switch
    # interval (5 ms, a few ticks) before it; released, it ticks all along.
    assert state["seconds"] > 0.3, "the solve was too short to tell"
    assert state["ticks"] >= 100 * state["seconds"], state
