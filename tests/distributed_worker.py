"""Run by tests/test_distributed.py, alone or under torchrun: observe epoch 0 of a toy run, then train it briefly.

    python tests/distributed_worker.py FOLDER            # one process
    torchrun --standalone --nproc_per_node 2 tests/distributed_worker.py FOLDER

Each process saves what it saw to FOLDER/seen_rank<R>_of_<W>.pt; the run itself goes to FOLDER/run_<W>.
"""
import sys
from pathlib import Path

import torch

from sdrc.data import make_domain_pair
from sdrc.distributed import close, init_from_env, rank, world_size
from sdrc.train import Trainer, TrainConfig


def toy_pair():
    "Sizes that do not split evenly, so the shards differ in length."
    return make_domain_pair(n_per_class=37, num_classes=3, dim=4, shift="translate", amount=1.5, seed=0)


def config(method: str) -> TrainConfig:
    return TrainConfig(method=method, preset="official", epochs=2, batch_size=16, record_samples=50, device="cpu")


def main(folder: Path) -> None:
    init_from_env("cpu")
    world = world_size()
    trainer = Trainer(toy_pair(), config("srdc"), progress=False)
    state, metrics, _ = trainer.observe(0)
    seen = dict(centres=[c.detach().clone() for c in trainer.centres], q=state["q"], weights=state["weights"],
                metrics=metrics)
    srdc = Trainer(toy_pair(), config("srdc"), out=folder / f"run_{world}", progress=False)
    history = srdc.fit(log=lambda line: None)
    dann = Trainer(toy_pair(), config("dann"), progress=False)
    dann.fit(log=lambda line: None)
    seen.update(history=history, params=[p.detach().clone() for p in (*srdc.model.parameters(), *srdc.centres)],
                dann_params=[p.detach().clone() for p in (*dann.model.parameters(), *dann.discriminator.parameters())])
    torch.save(seen, folder / f"seen_rank{rank()}_of_{world}.pt")
    close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
