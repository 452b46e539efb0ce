"""Stylize an image: ``python infer.py ckpt=starry_night input=in.jpg output=out.jpg``.

The same as the installed ``fststyle-infer`` command.
"""
from fststyle.cli import infer_main

if __name__ == "__main__":
    infer_main()
