"""fststyle: fast neural style transfer (Johnson et al. 2016) on PyTorch Lightning."""

__version__ = "0.1.0"

__all__ = ["Stylizer"]

try:  # the resolvers conf/ uses, for every way of composing it (entry points, tests, benches, the compose API)
    from fststyle.config import register_resolvers

    register_resolvers()
except ImportError:  # omegaconf missing: only the torch-free inference API is used
    pass


def __getattr__(name: str):
    # `from fststyle import Stylizer` without making `import fststyle` pay for torch
    if name == "Stylizer":
        from fststyle.infer.stylizer import Stylizer

        return Stylizer
    raise AttributeError(f"module 'fststyle' has no attribute {name!r}")
