"""Stylize an image: ``python infer.py ckpt=exports/starry_night.safetensors input=in.jpg output=out.jpg``."""
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fststyle.cli import check_config_choices, report_user_errors


@hydra.main(config_path="conf", config_name="infer", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    from fststyle.infer_cli import run

    run(cfg)


if __name__ == "__main__":
    check_config_choices(Path(__file__).parent / "conf")
    main()
