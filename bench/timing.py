"""The one timing rule of every bench: a warm-up call, then the best of ``repeats`` calls."""
import time


def best_of(fn, repeats: int = 3) -> float:
    fn()  # warm-up (allocations, oneDNN primitive creation, onnxruntime graph setup)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
