"""Training: the LightningModule, the run built from the Hydra config, data, scale-out and reliability."""
