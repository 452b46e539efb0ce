"""Train a style: ``python train.py style=starry_night`` (see conf/train.yaml for every option)."""
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fststyle.cli import check_config_choices, report_user_errors


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    from fststyle.training import train

    path = train(cfg)
    if path:
        print(f"exported {path}")


if __name__ == "__main__":
    check_config_choices(Path(__file__).parent / "conf")
    main()
