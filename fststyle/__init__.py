"""fststyle: fast neural style transfer (Johnson et al. 2016) on PyTorch Lightning."""

__version__ = "0.1.0"

__all__ = ["Stylizer"]


def __getattr__(name: str):
    # `from fststyle import Stylizer` without making `import fststyle` pay for torch
    if name == "Stylizer":
        from fststyle.inference import Stylizer

        return Stylizer
    raise AttributeError(f"module 'fststyle' has no attribute {name!r}")
