"""The page's /stylize against the engine fststyle-infer runs, on the same 1024-px photo, in one run.

    python bench/demo_latency.py [--photo ../shared/content/chicago.jpg] [--style starry_night] [--repeats 3]

Prints the page's start times (command to its first answer, and to the page itself), the best warm time of each path and their ratio.
"""
import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photo", default=str(ROOT.parent / "shared" / "content" / "chicago.jpg"))
    parser.add_argument("--style", default="starry_night")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    from gradio_client import Client, handle_file

    from fststyle.demo import wait_until_serving
    from fststyle.hardware import machine_summary
    from fststyle.images import read_array
    from fststyle.infer.engine import Engine, InferSettings
    from fststyle.zoo import resolve_model

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "fststyle.demo", f"port={port}", f"styles={args.style}"], cwd=ROOT,
                              env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    answered = wait_until_serving(url, server, starting_page=True)
    started = answered + wait_until_serving(url, server)
    try:
        client = Client(url, verbose=False)
        call = lambda: client.predict(handle_file(args.photo), args.style, 1.0, False, args.size, api_name="/stylize")  # noqa: E731
        call()  # warm: the style's graph converted and compiled
        page = min(timed(call) for _ in range(args.repeats))
    finally:
        server.terminate()
        server.wait()
    engine = Engine(InferSettings(), resolve_model(args.style)[0])
    photo = read_array(args.photo, args.size)
    engine(photo[None])
    direct = min(timed(lambda: engine(np.ascontiguousarray(photo[None]))) for _ in range(args.repeats))
    print(f"machine: {machine_summary('cpu')}; backend {engine.backend}, {engine.precision}")
    print(f"page start: first answer (the starting page) {answered:.1f} s, the page itself {started:.1f} s")
    print(f"{args.size}-px photo, best of {args.repeats} warm: page /stylize {page:.2f} s, engine alone {direct:.2f} s, "
          f"ratio {page / direct:.2f}x (the page also decodes, resizes, encodes a PNG and moves it over HTTP)")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
