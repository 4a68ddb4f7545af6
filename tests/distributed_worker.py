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
from sdrc.observe import epoch_metrics, observe
from sdrc.recipe import Recipe, Runtime
from sdrc.train import Trainer, reset_centres

QUIET = Runtime(device="cpu", progress=False, log=None)


def toy_pair():
    "Sizes that do not split evenly, so the shards differ in length."
    return make_domain_pair(n_per_class=37, num_classes=3, dim=4, shift="translate", amount=1.5, seed=0)


def recipe(method: str) -> Recipe:
    return Recipe(method=method, preset="official", epochs=2, batch_size=16, record_samples=50)


def main(folder: Path) -> None:
    init_from_env("cpu")
    world = world_size()
    trainer = Trainer(toy_pair(), recipe("srdc"), QUIET)
    obs = observe(trainer.model, trainer.domains, 0, trainer.recipe)
    reset_centres(trainer.centres, obs.centres, keep_grad=True)
    seen = dict(centres=[c.detach().clone() for c in trainer.centres], q=obs.q, weights=obs.weights,
                metrics=epoch_metrics(obs))
    srdc = Trainer(toy_pair(), recipe("srdc"), QUIET, out=folder / f"run_{world}")
    history = srdc.fit()
    dann = Trainer(toy_pair(), recipe("dann"), QUIET)
    dann.fit()
    seen.update(history=history, params=[p.detach().clone() for p in (*srdc.model.parameters(), *srdc.centres)],
                buffers=[b.detach().clone() for b in srdc.model.buffers()],  # as the run's last observation left them
                broadcast_buffers=getattr(srdc.train_model, "broadcast_buffers", None),
                dann_params=[p.detach().clone() for p in (*dann.model.parameters(), *dann.extra.parameters())])
    torch.save(seen, folder / f"seen_rank{rank()}_of_{world}.pt")
    close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
