"""The one timing rule of every bench: a warm-up call, then the best of ``repeats`` calls."""
import time


def best_of(fn, repeats: int = 3) -> float:
    return best_of_each({"": fn}, repeats)[""]


def best_of_each(fns: dict, repeats: int = 3) -> dict:
    """``best_of`` for several paths, their calls interleaved round by round, so that a slow spell of
    a shared machine (seen: +-30% within a minute) hits every path rather than one."""
    for fn in fns.values():
        fn()  # warm-up (allocations, oneDNN primitive creation, runtime graph setup)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}
