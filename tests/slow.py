"""A callback that makes each training step last at least ``seconds``: signals sent by a test then land
mid-run on any machine, however fast its tiny steps are."""
import time

from pytorch_lightning.callbacks import Callback


class SlowSteps(Callback):
    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, *args) -> None:
        time.sleep(self.seconds)
