"""One process of a data-parallel run, launched by torchrun from test_ddp.py.

    torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py OUT key=value ...

Trains through ``toflow.train`` and leaves, per process, its final flow state
(``OUT/state_rank<r>.pt``) and what ``train`` returned (``OUT/summary_rank<r>.json``).
"""

import json
import os
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

import toflow


class SaveFinalState(pl.Callback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_end(self, trainer, module):
        state = {name: tensor.detach().cpu().clone() for name, tensor in module.flow.state_dict().items()
                 if torch.is_tensor(tensor)}
        torch.save(state, self.out / f"state_rank{trainer.global_rank}.pt")


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    cfg = toflow.load_config("configs/toy_checkerboard_toflow.yaml", sys.argv[2:])
    source = None
    poison = os.environ.get("POISON_RANK1_BATCH")  # a NaN in this batch of the second process only
    if poison is not None and os.environ.get("RANK") == "1":
        from test_reliability import PoisonedSource

        source = PoisonedSource(cfg, {int(poison)})
    summary = toflow.train(cfg, callbacks=[SaveFinalState(out)], source=source)
    (out / f"summary_rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
