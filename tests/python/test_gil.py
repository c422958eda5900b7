# The GIL is released while the library computes: another Python thread
# makes progress during a long solve. Nothing here waits a fixed time and
# assumes the worker got somewhere: the main thread waits for events with
# generous timeouts, and a failure inside the worker is reported here, in the
# main thread, instead of leaving the loop below waiting forever.
import threading
import time

import sgdstab
from conftest import jacobian


def test_a_second_thread_runs_during_a_solve():
    g = sgdstab.Geometry.from_jacobian(jacobian(100, 1, 160, seed=8), 1)
    started = threading.Event()
    done = threading.Event()
    state = {"seconds": 0.0, "converged": None, "error": None}

    def solve():
        t0 = time.monotonic()
        try:
            started.set()
            r = sgdstab.threshold(g, 3, method="dense", dense_max_dimension=10**6)
            state["converged"] = r.converged
        except BaseException as e:  # reported by the main thread
            state["error"] = e
        finally:
            state["seconds"] = time.monotonic() - t0
            done.set()

    worker = threading.Thread(target=solve, daemon=True)
    worker.start()
    assert started.wait(timeout=120), "the worker thread never started"
    ticks = 0
    deadline = time.monotonic() + 600
    while not done.is_set() and time.monotonic() < deadline:
        ticks += 1  # counted only while the solve runs
        time.sleep(0.001)
    worker.join(timeout=60)
    assert not worker.is_alive(), "the solve did not finish within 10 minutes"
    assert state["error"] is None, f"the solve raised {state['error']!r}"
    assert state["converged"]
    # Holding the GIL, the solve would leave this thread at most one switch
    # interval (5 ms, a few ticks) before it; released, it ticks all along
    # (a tick is a 1 ms sleep: 100 per second leaves 10 ms per tick for a
    # busy machine).
    assert state["seconds"] > 0.3, "the solve was too short to tell"
    assert ticks >= 100 * state["seconds"], (ticks, state)
