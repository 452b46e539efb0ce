"""The one timing rule of every bench (a warm-up call, then the best of ``repeats`` calls), and the FLOP counts
and convolution peak their % of peak figures use."""
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


def flops(fn) -> float:
    """Convolution/matmul FLOPs of one call of ``fn`` (torch's FlopCounterMode), the work the % of peak figures divide."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def conv_peak_run(network, x, precision: str = "fp32"):
    """A call of ``network(x)`` in the layout oneDNN convolves fastest for ``precision`` (fp32 NCHW; bf16/fp16
    channels_last under autocast), on a copy of ``network``: the most convolution-friendly work a bench has."""
    import copy

    import torch

    from fststyle.hardware import torch_dtype

    low = precision != "fp32"
    layout = torch.channels_last if low else torch.contiguous_format
    net = copy.deepcopy(network).to(memory_format=layout)
    xl = x.contiguous(memory_format=layout)

    def run():
        with torch.no_grad(), torch.autocast(x.device.type, dtype=torch_dtype(precision), enabled=low):
            net(xl)
    return run


def conv_rate(network, x, precision: str = "fp32") -> float:
    """FLOP/s of ``conv_peak_run``: this machine's convolution peak."""
    run = conv_peak_run(network, x, precision)
    return flops(run) / best_of(run)
