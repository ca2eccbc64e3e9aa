"""What a loaded zoo is: the contract between the zoo loaders and the engine.

Every zoo (the embedded tiny one, real CLIP ones) loads into a `Zoo`. The engine only uses
what is here: the base image encoder, the clean task vectors, the frozen heads and the data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

SPLITS = ("train", "val", "test", "pool")  # pool = the episodic memory for few-shot realignment


@dataclass(frozen=True)
class TaskInfo:
    name: str                       # short id, e.g. "digits"
    title: str                      # human name, e.g. "Digits (MNIST-like)"
    description: str                # one sentence on what the task shows
    class_names: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Zoo:
    name: str
    fingerprint: str                                  # changes whenever any shipped byte changes
    card: Mapping                                     # the zoo card (JSON data)
    model: torch.nn.Module                            # open_clip CLIP model holding the *base* weights, eval mode
    base_state: Mapping[str, torch.Tensor]            # image encoder (model.visual) parameters, float32
    task_vectors: Mapping[str, Mapping[str, torch.Tensor]]  # task -> same keys as base_state, float32
    heads: Mapping[str, torch.Tensor]                 # task -> [classes, embed_dim], rows unit norm, frozen
    logit_scale: float                                # multiplies cosine similarities into logits
    tasks: Mapping[str, TaskInfo]
    finetuned_accuracy: Mapping[str, float]           # individual fine-tuning accuracy on the test split
    zeroshot_accuracy: Mapping[str, float]            # base model accuracy on the test split
    # (task, split, n) -> (images [n, 3, H, W] float32 preprocessed for the encoder, labels [n] int64);
    # n=None gives the whole split; the first n are always the same n samples (deterministic).
    data: Callable[[str, str, int | None], tuple[torch.Tensor, torch.Tensor]] = field(repr=False)

    @property
    def encoder(self) -> torch.nn.Module:
        return self.model.visual

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(self.tasks)

    def split(self, task: str, split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.data(task, split, n)
