"""The merge methods as records: name, title, reference, the recipe's switches (fusion.py), the
scenario's `fusion.*` parameters each reads (their defaults and bounds are the schema's:
`scenario.FusionConfig`), how lambda is chosen for it, and its published clean number where one
exists. Plain data (no torch): the schema, the app and `python -m rmtllmf_core methods` read it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

# lambda for the task-arithmetic family, searched on validation data (the task-arithmetic paper's grid, coarser)
TA_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# the singular-value merges keep less energy (truncated or flattened spectra): their papers search 0.1 .. 3.0
SPECTRAL_GRID = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
LAMBDA_MAX = 3.0


@dataclass(frozen=True)
class Published:
    """A clean multi-task number from the literature, with what it was measured on."""
    value: float       # percent
    metric: str        # "normalized" (fused / individually fine-tuned) or "absolute" top-1 accuracy
    model: str         # backbone, task set and checkpoints
    source: str        # where we read it


@dataclass(frozen=True)
class Param:
    """One `fusion.*` field a method reads: the widget's label and step (default and bounds: the schema's)."""
    name: str
    label: str
    step: float | int = 1


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    reference: str
    switches: dict = field(default_factory=dict)  # fusion.Recipe's fields that differ from task arithmetic
    params: tuple[Param, ...] = ()                # FusionConfig fields the method reads (besides lambda)
    help: str = ""
    lambda_grid: tuple[float, ...] = TA_GRID      # lambda_mode "validation"
    paper_lambda: float | None = None             # lambda_mode "heuristic": the paper's default (None: 1/sqrt(N))
    published: tuple[Published, ...] = ()

    def heuristic_lambda(self, n_tasks: int) -> float:
        return self.paper_lambda if self.paper_lambda is not None else 1.0 / math.sqrt(max(1, int(n_tasks)))


FB_DOC = "FusionBench docs, modelpool/clip_vit.md (tanganke/fusion_bench)"
FB_MODEL = "CLIP ViT-B/32, the 8 tasks of task arithmetic, FusionBench checkpoints"
TSV_DATA = "computed from the per-task accuracies in AntoAndGar/task_singular_vectors (radar_results_ViT-B-32.json)"
TSV_MODEL = "CLIP ViT-B/32, the 8 tasks of task arithmetic, open_clip checkpoints"

METHOD_RECORDS: tuple[Method, ...] = (
    Method("task_arithmetic", "task arithmetic", "Ilharco et al., Editing models with task arithmetic, ICLR 2023",
           help="lambda x the sum of the task vectors",
           published=(Published(68.0, "absolute", FB_MODEL, FB_DOC), Published(76.5, "normalized", TSV_MODEL, TSV_DATA))),
    Method("ties", "TIES", "Yadav et al., TIES-Merging: resolving interference when merging models, NeurIPS 2023",
           switches={"sparsify": "magnitude", "sign": "ties"}, params=(Param("density", "TIES density (share of entries kept)", 0.05),),
           help="keep each vector's largest entries, elect one sign per entry, sum the agreeing ones",
           published=(Published(72.2, "absolute", FB_MODEL, FB_DOC),)),
    Method("dare", "DARE", "Yu et al., Language models are Super Mario, ICML 2024",
           switches={"sparsify": "random"}, params=(Param("drop_rate", "DARE drop rate", 0.05),),
           help="drop entries at random and rescale the rest"),
    Method("consensus", "consensus (TALL masks)",
           "Wang et al., Localizing task information for improved model merging and compression, ICML 2024",
           switches={"sparsify": "consensus"}, params=(Param("consensus_min_tasks", "Tasks that must agree"),
                                                Param("tall_mask_lambda", "TALL mask threshold", 0.1)),
           help="zero the entries fewer than k tasks claim",
           published=(Published(80.8, "normalized", TSV_MODEL, TSV_DATA),)),
    Method("layer_aware", "layer-aware (LATA, adapted)", "Chen et al., layer-aware task arithmetic, 2025 (adapted to vision: fusion.py)",
           switches={"weighting": "layer_aware"}, help="attenuate the layers the tasks share"),
    Method("average", "average", "Wortsman et al., Model soups, ICML 2022", switches={"scale": "mean"},
           lambda_grid=(), help="the mean of the task vectors (lambda 1/N)"),
    Method("tsv_m", "TSV-M", "Gargiulo et al., Task singular vectors: reducing task interference in model merging, CVPR 2025",
           switches={"spectral": "tsv"}, lambda_grid=SPECTRAL_GRID, paper_lambda=1.0,
           help="each task matrix's top singular vectors, decorrelated across tasks, then summed",
           published=(Published(83.07, "absolute", FB_MODEL, "FusionBench pull request #52 (TSVM, alpha 1)"),
                      Published(92.3, "normalized", TSV_MODEL, TSV_DATA))),
    Method("iso_c", "Iso-C", "Marczak et al., No task left behind: isotropic model merging with common and "
           "task-specific subspaces, ICML 2025", switches={"spectral": "iso"}, lambda_grid=SPECTRAL_GRID,
           paper_lambda=1.5, help="the summed task matrix with a flat spectrum",
           published=(Published(82.8, "absolute", FB_MODEL, FB_DOC),)),
    Method("iso_cts", "Iso-CTS", "Marczak et al., No task left behind: isotropic model merging with common and "
           "task-specific subspaces, ICML 2025", switches={"spectral": "iso_cts"}, lambda_grid=SPECTRAL_GRID,
           paper_lambda=1.5, help="a common subspace plus each task's own directions, with a flat spectrum",
           published=(Published(82.7, "absolute", FB_MODEL, FB_DOC),)),
)
METHODS: dict[str, Method] = {m.name: m for m in METHOD_RECORDS}
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
