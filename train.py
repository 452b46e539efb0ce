"""Train a style: ``python train.py style=starry_night`` (see conf/train.yaml for every option).

The same as the installed ``fststyle-train`` command.
"""
from fststyle.cli import train_main

if __name__ == "__main__":
    train_main()
