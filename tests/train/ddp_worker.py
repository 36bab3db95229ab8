"""One process of the 2-process gloo test: `torchrun ... ddp_worker.py OUT_DIR -- <msgf train args>`.

Trains like `msgf train`, then saves this rank's final model state to OUT_DIR/rank<R>.pt.
"""
import os
import sys

import torch

from msgf.cli import build_parser
from msgf.commands.train import config_from_args
from msgf.train.loop import RunOptions, Trainer

if __name__ == "__main__":
    out = sys.argv[1]
    args = build_parser().parse_args(["train", *sys.argv[2:], "--out", out])
    trainer = Trainer(config_from_args(args), RunOptions(out=args.out, progress=False))
    try:
        trainer.run()
        rank = int(os.environ["RANK"])
        torch.save({k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
                   os.path.join(out, f"rank{rank}.pt"))
    finally:
        trainer.close()
