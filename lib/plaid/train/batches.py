"""Training batches built whole: one gather per image, augmentation as batch operations, one shape per batch.

Each batch is planned in the main process (`BatchPlan`: which patches, their labels, their flip/rotation
draws, the inserted clusters) and built in a DataLoader worker (or in the main process without workers) by
`PatchBatchSource`: the stored uint16 patches of each image are gathered at once, inserted-cluster positives
are pasted in. Where the batch is finished depends on the device:

- on the CPU the worker widens the batch to float and applies the flips and rotations (`augment_batch`), so
  the main process only runs the step;
- on CUDA the worker hands over the uint16 batch and its draws (half the bytes of float32, pinned), and
  `batch_on_device` widens and augments it on the GPU with the same `augment_batch`.

Training batches are all ``batch_size`` long (the epoch is padded with patches from its start), so
``cudnn.benchmark`` meets one shape. One DataLoader is kept per set of images (`BatchFeed`): with workers
they persist across epochs, and the prepared images reach them once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from plaid.patches.prepared import UINT16_SCALE, PreparedImage
from plaid.patches.sampling import PatchIndex
from plaid.train.insertion import InsertedPositives, clustered_patch

NO_AUGMENTATION = -1
LOADERS_KEPT = 2  # training images and validation images


def draw_dihedral(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` flip/rotation codes: bit 0 a left-right flip, bit 1 an up-down flip (each with probability
    1/2), bits 2-3 the number of quarter turns (0-3, uniform), as the per-patch augmentation drew them."""
    left_right = rng.random(count) < 0.5
    up_down = rng.random(count) < 0.5
    turns = rng.integers(0, 4, size=count)
    return (left_right.astype(np.int64) + 2 * up_down + 4 * turns).astype(np.int8)


def _dihedral(patches: torch.Tensor, code: int) -> torch.Tensor:
    """Patches flipped and turned by one code (see `draw_dihedral`)."""
    dims = [dim for bit, dim in ((1, -1), (2, -2)) if code & bit]
    out = patches.flip(dims) if dims else patches
    return torch.rot90(out, code >> 2, dims=(-2, -1)) if code >> 2 else out


def augment_batch(patches: torch.Tensor, codes: torch.Tensor | np.ndarray) -> torch.Tensor:
    """The (N, C, H, W) square patches flipped and turned by their codes (`draw_dihedral`): left-right flip,
    then up-down flip, then quarter turns (tests/test_batches.py checks each code against one patch). The patches
    that draw the same code are selected, transformed and written back together (one batch operation per
    code, never one per patch); a code below 0 leaves its patch alone. Runs on whatever device ``patches``
    are on; returns a new tensor."""
    codes = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.int64)
    out = torch.empty_like(patches)
    for code in np.unique(codes):
        chosen = np.flatnonzero(codes == code)
        if len(chosen) == len(codes):
            return _dihedral(patches, int(code)).contiguous() if code > 0 else patches.clone()
        at = torch.from_numpy(chosen).to(patches.device)
        selected = patches.index_select(0, at)
        out.index_copy_(0, at, _dihedral(selected, int(code)) if code > 0 else selected)
    return out


def widen(stored: torch.Tensor) -> torch.Tensor:
    """uint16-as-int16 patches (65535 means 1) as float32 in [0, 1], on their device."""
    return (stored.to(torch.int32) & 0xFFFF).to(torch.float32).mul_(1.0 / UINT16_SCALE)


def batch_on_device(batch: Sequence[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(float patches in channels_last, labels) on ``device`` from what a loader yields: finished
    ``(patches, labels)``, or ``(uint16 patches, codes, labels)`` to widen and augment on the device."""
    if len(batch) == 2:
        patches, labels = batch
        patches = patches.to(device, non_blocking=True)
    else:
        stored, codes, labels = batch
        patches = augment_batch(widen(stored.to(device, non_blocking=True)), codes)
    return patches.contiguous(memory_format=torch.channels_last), labels.to(device, non_blocking=True)


@dataclass(frozen=True)
class BatchPlan:
    """One batch, small enough to send to a worker: per patch its image, grid patch, label and flip/rotation
    code (`NO_AUGMENTATION` when none). Inserted-cluster positives carry their item number (else -1) and the
    patch their item drew; ``inserted_seed`` and ``inserted_rows`` rebuild each item's generator."""

    image: np.ndarray
    patch: np.ndarray
    label: np.ndarray
    codes: np.ndarray
    inserted_item: np.ndarray
    inserted_seed: int = 0
    inserted_rows: int = 0

    def __len__(self) -> int:
        return len(self.label)


def plan_epoch(index: PatchIndex, batch_size: int, seed: int, augment: bool, shuffle: bool,
               inserted: InsertedPositives | None = None, rank: int = 0, world_size: int = 1) -> list[BatchPlan]:
    """The batches of one pass over ``index`` (and ``inserted``'s positives).

    With ``shuffle`` (training): inserted positives are mixed in at random (seeded), the epoch is padded with
    its first patches to a multiple of ``world_size * batch_size`` so every batch has one shape, and this rank
    takes every ``world_size``-th patch. Flip/rotation codes are drawn per batch from ``(seed, batch)``, so they
    do not depend on the number of workers. Without ``shuffle`` (scoring) the rows keep their order and the
    last batch may be shorter.
    """
    count = len(inserted) if inserted is not None else 0
    drawn = np.array([inserted.draw(item)[1:] for item in range(count)], dtype=np.int64).reshape(-1, 2)
    image = np.concatenate([index.image, drawn[:, 0]]).astype(np.int64)
    patch = np.concatenate([index.patch, drawn[:, 1]]).astype(np.int64)
    label = np.concatenate([index.label, np.ones(count)]).astype(np.float32)
    item = np.concatenate([np.full(len(index), -1), np.arange(count)]).astype(np.int64)
    order = np.arange(len(label))
    if shuffle and len(order):
        if count:
            order = np.random.default_rng([seed, 0x5EED]).permutation(order)
        step = batch_size * world_size
        order = np.resize(order, -(-len(order) // step) * step)[rank::world_size]
    plans = []
    for number, start in enumerate(range(0, len(order), batch_size)):
        rows = order[start : start + batch_size]
        codes = (draw_dihedral(np.random.default_rng([seed, rank, number]), len(rows)) if augment
                 else np.full(len(rows), NO_AUGMENTATION, dtype=np.int8))
        plans.append(BatchPlan(image[rows], patch[rows], label[rows], codes, item[rows],
                               inserted.seed if count else 0, len(inserted.rows) if count else 0))
    return plans


class PatchBatchSource(Dataset):
    """Builds the batch a `BatchPlan` describes from the prepared images (uint16, one gather per image).

    With ``finish`` (the CPU, and scoring) it yields float ``(patches, labels)`` already augmented; otherwise
    ``(uint16-as-int16 patches, codes, labels)`` for `batch_on_device` to finish on the GPU."""

    def __init__(self, images: Sequence[PreparedImage], finish: bool) -> None:
        self.images = images
        self.finish = finish

    def __len__(self) -> int:
        return 0  # items are plans, handed out by `PlanSampler`

    def __getitem__(self, plan: BatchPlan) -> tuple[torch.Tensor, ...]:
        size = self.images[0].grid.patch_size if self.images else 0
        stored = np.empty((len(plan), 1, size, size), dtype=np.uint16)
        real = plan.inserted_item < 0
        for number in np.unique(plan.image[real]):
            at = np.flatnonzero(real & (plan.image == number))
            stored[at, 0] = self.images[int(number)].patch_stack(plan.patch[at])
        for at in np.flatnonzero(~real):  # the generator as `InsertedPositives.draw` left it, then the cluster
            rng = np.random.default_rng([plan.inserted_seed, int(plan.inserted_item[at])])
            rng.integers(plan.inserted_rows)
            cluster = clustered_patch(self.images[int(plan.image[at])], int(plan.patch[at]), rng)
            stored[at, 0] = np.rint(cluster * np.float32(UINT16_SCALE))
        labels = torch.from_numpy(plan.label)
        if self.finish:  # one pass from uint16 to [0, 1] float32, then the flips and turns
            unit = torch.from_numpy(np.multiply(stored, np.float32(1.0 / UINT16_SCALE), dtype=np.float32))
            return augment_batch(unit, plan.codes), labels
        return torch.from_numpy(stored.view(np.int16)), torch.from_numpy(plan.codes), labels


class PlanSampler(Sampler):
    """Hands the current pass's `BatchPlan`s to the DataLoader (which runs in the main process, so a persistent
    loader picks up each new epoch's plans)."""

    def __init__(self) -> None:
        self.plans: list[BatchPlan] = []

    def __iter__(self) -> Iterator[BatchPlan]:
        return iter(self.plans)

    def __len__(self) -> int:
        return len(self.plans)


class PlannedLoader:
    """One pass of a kept DataLoader over fixed plans: iterating sets the plans, then yields the batches."""

    def __init__(self, loader: DataLoader, plans: list[BatchPlan]) -> None:
        self.loader = loader
        self.plans = plans

    def __len__(self) -> int:
        return len(self.plans)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        self.loader.sampler.plans = self.plans
        return iter(self.loader)


class BatchFeed:
    """The trainer's batch loaders: one DataLoader per set of prepared images, kept (with its persistent
    workers) across epochs; pinned memory on CUDA."""

    def __init__(self, batch_size: int, num_workers: int, device: torch.device, rank: int = 0,
                 world_size: int = 1) -> None:
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.device = device
        self.rank, self.world_size = rank, world_size
        self._loaders: OrderedDict[tuple[int, bool], tuple[Sequence[PreparedImage], DataLoader]] = OrderedDict()

    def _loader(self, images: Sequence[PreparedImage], finish: bool) -> DataLoader:
        key = (id(images), finish)
        if key in self._loaders:
            self._loaders.move_to_end(key)
            return self._loaders[key][1]
        loader = DataLoader(PatchBatchSource(images, finish), batch_size=None, sampler=PlanSampler(),
                            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                            pin_memory=self.device.type == "cuda")
        self._loaders[key] = (images, loader)  # the images stay referenced, so their id is not reused
        while len(self._loaders) > LOADERS_KEPT:
            self._loaders.popitem(last=False)
        return loader

    def loader(self, images: Sequence[PreparedImage], index: PatchIndex, shuffle: bool, seed: int, augment: bool,
               inserted: InsertedPositives | None = None) -> PlannedLoader:
        """The batches of one pass over ``index`` (training when ``shuffle``: padded, augmented, shared by rank)."""
        inserted = inserted if inserted is not None and len(inserted) else None
        plans = plan_epoch(index, self.batch_size, seed, augment, shuffle, inserted,
                           self.rank if shuffle else 0, self.world_size if shuffle else 1)
        finish = self.device.type != "cuda" or not shuffle
        return PlannedLoader(self._loader(images, finish), plans)

