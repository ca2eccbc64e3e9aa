"""The paper's eight image-classification datasets (and any folder of class folders), for real CLIP zoos.

    from rmtllmf_core.zoo.datasets import open_task, DATASETS
    src = open_task("eurosat", "/data")          # AssetError saying where and how, if absent
    src.class_names, src.split_sizes()           # train / val / test / pool

- torchvision where it has the dataset (MNIST, SVHN, GTSRB, DTD, EuroSAT, StanfordCars, SUN397),
  read from the usual torchvision layout under a data root and downloaded only when asked
  (``download=True``); RESISC45 and anything a person brings as an ImageFolder (one folder per
  class, optionally with ``train/`` and ``test/`` sub-folders).
- Splits, all deterministic from (dataset, ``split_seed``): ``val`` is held out of the training
  data (10% of it, at most 5,000 images, as in the task-arithmetic recipe) and never trained on;
  ``train`` is the rest; ``pool`` (the episodic memory for few-shot realignment) is the first
  ``pool_per_class`` images per class of ``train``; ``test`` is the dataset's own test split, or
  a held-out ``test_fraction`` of a dataset that ships a single split (EuroSAT, SUN397, RESISC45,
  single-split folders).
- Every split is ordered class-interleaved (a seeded shuffle within each class, then round robin),
  so the first n images of a split are balanced and always the same n: the contract of `Zoo.data`.
- Images go through CLIP's evaluation preprocessing (shortest side resized bicubic to the model's
  input size, centre crop, normalise); `SplitData` keeps them as uint8 and normalises on return.
"""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import AssetError, InputError
from .types import SPLITS, TaskInfo

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

SPLIT_DEFAULTS = {"split_seed": 0, "val_fraction": 0.1, "max_val": 5000, "test_fraction": 0.2, "pool_per_class": 10}

GTSRB_CLASSES = (
    "speed limit 20 km/h", "speed limit 30 km/h", "speed limit 50 km/h", "speed limit 60 km/h",
    "speed limit 70 km/h", "speed limit 80 km/h", "end of speed limit 80 km/h", "speed limit 100 km/h",
    "speed limit 120 km/h", "no overtaking", "no overtaking by trucks", "right of way at the next intersection",
    "priority road", "yield", "stop", "no vehicles", "no trucks", "no entry", "general caution",
    "dangerous curve to the left", "dangerous curve to the right", "double curve", "bumpy road",
    "slippery road", "road narrows on the right", "road work", "traffic signals", "pedestrians",
    "children crossing", "bicycles crossing", "beware of ice and snow", "wild animals crossing",
    "end of all speed and passing limits", "turn right ahead", "turn left ahead", "ahead only",
    "go straight or right", "go straight or left", "keep right", "keep left", "roundabout",
    "end of no overtaking", "end of no overtaking by trucks",
)
EUROSAT_NAMES = {  # torchvision folder name -> words a text encoder knows
    "AnnualCrop": "annual crop land", "Forest": "forest", "HerbaceousVegetation": "brushland or shrubland",
    "Highway": "highway or road", "Industrial": "industrial buildings", "Pasture": "pasture land",
    "PermanentCrop": "permanent crop land", "Residential": "residential buildings", "River": "river",
    "SeaLake": "sea or lake",
}
DIGITS = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class DatasetSpec:
    name: str                        # task id in the zoo
    title: str
    description: str
    templates: tuple[str, ...]       # zero-shot prompt templates, "{}" = class name
    where: str                       # expected layout under the data root
    how: str                         # how to get it
    torchvision: str | None = None   # torchvision class; None = ImageFolder under data_root/<name>
    can_download: bool = False
    class_names: tuple[str, ...] | None = None  # fixed names (else from the dataset, prettified)


DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (
    DatasetSpec("cars", "Stanford Cars", "196 car models (make, model, year) in street and studio photos.",
                ("a photo of a {}.", "a photo of my {}.", "a photo of the {}, a type of car.", "a close-up photo of a {}."),
                "DATA_ROOT/stanford_cars/ with devkit/, cars_train/, cars_test/ and cars_test_annos_withlabels.mat",
                "torchvision cannot download it (the original URL is gone): fetch a mirror of the Stanford Cars "
                "dataset (e.g. the Kaggle copy) and unpack it there", "StanfordCars"),
    DatasetSpec("dtd", "DTD (textures)", "47 describable texture categories (banded, braided, cracked, ...).",
                ("a photo of a {} texture.", "a photo of a {} pattern.", "a photo of a {} object.", "a close-up photo of a {} texture."),
                "DATA_ROOT/dtd/dtd/images/<class>/ and DATA_ROOT/dtd/dtd/labels/", "pass --download (torchvision DTD, 0.6 GB)",
                "DTD", True),
    DatasetSpec("eurosat", "EuroSAT", "Sentinel-2 satellite tiles of 10 land-cover classes.",
                ("a centered satellite photo of {}.", "a satellite photo of {}.", "a centered satellite image of {}."),
                "DATA_ROOT/eurosat/2750/<class>/", "pass --download (torchvision EuroSAT RGB, 90 MB)", "EuroSAT", True),
    DatasetSpec("gtsrb", "GTSRB", "German traffic signs of 43 classes.",
                ('a zoomed in photo of a "{}" traffic sign.', 'a centered photo of a "{}" traffic sign.',
                 'a close up photo of a "{}" traffic sign.'),
                "DATA_ROOT/gtsrb/GTSRB/Training/ and DATA_ROOT/gtsrb/GTSRB/Final_Test/ with DATA_ROOT/gtsrb/GT-final_test.csv",
                "pass --download (torchvision GTSRB, 0.3 GB)", "GTSRB", True, GTSRB_CLASSES),
    DatasetSpec("mnist", "MNIST", "Handwritten digits 0-9.",
                ('a photo of the number: "{}".', 'a photo of the digit "{}".', 'a handwritten "{}".'),
                "DATA_ROOT/MNIST/raw/ (the four *-ubyte files)", "pass --download (torchvision MNIST, 60 MB)", "MNIST", True, DIGITS),
    DatasetSpec("resisc45", "RESISC45", "45 classes of aerial scenes (NWPU-RESISC45).",
                ("satellite imagery of {}.", "aerial imagery of {}.", "satellite photo of a {}.", "aerial photo of the {}."),
                "DATA_ROOT/resisc45/<class>/*.jpg (the 45 class folders of NWPU-RESISC45; a single NWPU-RESISC45/ "
                "folder in between is fine)",
                "download NWPU-RESISC45 (e.g. the archive behind TensorFlow Datasets' resisc45 entry) and unpack it there"),
    DatasetSpec("sun397", "SUN397", "397 categories of indoor and outdoor scenes.",
                ("a photo of a {}.", "a photo of the {}.", "a photo of the large {}.", "a photo of the small {}."),
                "DATA_ROOT/SUN397/ with ClassName.txt and a/abbey/*.jpg ...", "pass --download (torchvision SUN397, 37 GB)",
                "SUN397", True),
    DatasetSpec("svhn", "SVHN", "House numbers cropped from Street View: digits 0-9.",
                ('a photo of the number: "{}".', 'a street sign of the number: "{}".', 'a house number "{}".'),
                "DATA_ROOT/svhn/train_32x32.mat and DATA_ROOT/svhn/test_32x32.mat", "pass --download (torchvision SVHN, 0.6 GB)",
                "SVHN", True, DIGITS),
)}
PAPER_TASKS = tuple(DATASETS)  # cars, dtd, eurosat, gtsrb, mnist, resisc45, sun397, svhn
FOLDER_TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "an image of a {}.")
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def pretty(name: str) -> str:
    """'baseball_diamond' -> 'baseball diamond', 'apartment_building/outdoor' -> 'apartment building outdoor'."""
    return re.sub(r"\s+", " ", re.sub(r"[_/\\]+", " ", str(name))).strip()


def _missing(spec_or_name, root: Path, why: str = "", downloading: bool = False) -> AssetError:
    if isinstance(spec_or_name, DatasetSpec):
        where, how = spec_or_name.where.replace("DATA_ROOT", str(root)), spec_or_name.how
        if downloading and spec_or_name.can_download:  # --download was given and failed: say what else to do
            how = ("the download failed: run again with --download where the internet is reachable, or download "
                   "it on another machine and copy it there")
        return AssetError(str(root), f"dataset {spec_or_name.name!r} not found{f' ({why})' if why else ''}: expected {where}; "
                                     f"to get it: {how}")
    return AssetError(str(root), f"dataset {spec_or_name!r} not found{f' ({why})' if why else ''}: expected an "
                                 f"ImageFolder at {root} (one sub-folder of images per class, optionally under "
                                 f"train/ and test/)")


def _labels_of(ds) -> np.ndarray:
    for attr in ("targets", "labels", "_labels"):
        v = getattr(ds, attr, None)
        if v is not None:
            return np.asarray(v, dtype=np.int64).reshape(-1)
    if hasattr(ds, "_samples"):
        return np.asarray([s[1] for s in ds._samples], dtype=np.int64)
    if isinstance(ds, torch.utils.data.ConcatDataset):
        return np.concatenate([_labels_of(d) for d in ds.datasets])
    raise TypeError(f"cannot read the labels of {type(ds).__name__}")


def _image_folder(path: Path):
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(path), is_valid_file=lambda p: p.lower().endswith(IMG_EXTENSIONS))


def _folder_root(path: Path) -> Path:
    """A folder of class folders; skips one lone wrapper folder (e.g. NWPU-RESISC45/)."""
    subs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")] if path.is_dir() else []
    if len(subs) == 1 and any(q.is_dir() for q in subs[0].iterdir()):
        return subs[0]
    return path


@dataclass
class Source:
    """One dataset opened: train and test datasets yielding (PIL image, label), their labels, class names."""
    name: str
    class_names: tuple[str, ...]
    train: object
    test: object | None              # None: carve the test split out of `train`
    train_labels: np.ndarray
    test_labels: np.ndarray | None
    templates: tuple[str, ...]
    title: str
    description: str
    location: str
    split_cfg: dict = field(default_factory=lambda: dict(SPLIT_DEFAULTS))
    _splits: dict | None = None

    def splits(self) -> dict[str, tuple[str, np.ndarray]]:
        """split -> (which dataset: 'train' | 'test', indices into it, class-interleaved)."""
        if self._splits is None:
            self._splits = make_splits(self.train_labels, self.test_labels, len(self.class_names),
                                       seed_key=self.name, **self.split_cfg)
        return self._splits

    def split_sizes(self) -> dict[str, int]:
        return {s: len(ix) for s, (_, ix) in self.splits().items()}

    def dataset(self, which: str):
        return self.train if which == "train" else self.test

    def fingerprint(self) -> str:
        """Changes when the dataset's sizes or labels change (checked when a zoo loads it again)."""
        h = hashlib.sha256(np.ascontiguousarray(self.train_labels).tobytes())
        if self.test_labels is not None:
            h.update(b"|" + np.ascontiguousarray(self.test_labels).tobytes())
        h.update(repr(self.class_names).encode())
        return h.hexdigest()[:16]

    def info(self) -> TaskInfo:
        return TaskInfo(self.name, self.title, self.description, self.class_names)


def _rng(seed: int, key: str, purpose: str) -> np.random.Generator:
    d = hashlib.sha256(f"{seed}|{key}|{purpose}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(d[:8], "little")))


def interleave(labels: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """idx reordered: seeded shuffle within each class, then one of each class in turn (round robin)."""
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) == 0:
        return idx
    lab = labels[idx]
    per = [rng.permutation(idx[lab == c]) for c in np.unique(lab)]
    rank = np.concatenate([np.arange(len(p)) for p in per])
    cls = np.concatenate([np.full(len(p), i) for i, p in enumerate(per)])
    allidx = np.concatenate(per)
    return allidx[np.lexsort((cls, rank))]


def make_splits(train_labels: np.ndarray, test_labels: np.ndarray | None, n_classes: int, *, seed_key: str,
                split_seed: int = 0, val_fraction: float = 0.1, max_val: int = 5000, test_fraction: float = 0.2,
                pool_per_class: int = 10) -> dict[str, tuple[str, np.ndarray]]:
    if not 0 < val_fraction < 1:
        raise InputError("val_fraction", f"must be in (0, 1), got {val_fraction}")
    if not 0 < test_fraction < 1:
        raise InputError("test_fraction", f"must be in (0, 1), got {test_fraction}")
    if pool_per_class < 1:
        raise InputError("pool_per_class", f"at least 1, got {pool_per_class}")
    train_labels = np.asarray(train_labels, dtype=np.int64)
    all_train = np.arange(len(train_labels))
    if test_labels is None:  # a single-split dataset: hold out a stratified test split
        rng = _rng(split_seed, seed_key, "test")
        test_idx, rest = [], []
        for c in np.unique(train_labels):
            ix = rng.permutation(all_train[train_labels == c])
            k = int(round(test_fraction * len(ix))) if len(ix) > 1 else 0
            test_idx.append(ix[:k])
            rest.append(ix[k:])
        test = ("train", interleave(train_labels, np.concatenate(test_idx), _rng(split_seed, seed_key, "test-order")))
        all_train = np.sort(np.concatenate(rest))
    else:
        test = ("test", interleave(np.asarray(test_labels), np.arange(len(test_labels)), _rng(split_seed, seed_key, "test-order")))
    rng = _rng(split_seed, seed_key, "val")
    n_val = min(int(max_val), int(round(val_fraction * len(all_train))))
    perm = rng.permutation(all_train)
    val_idx, tr_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    train = interleave(train_labels, tr_idx, _rng(split_seed, seed_key, "train-order"))
    lab = train_labels[train]
    pool = np.concatenate([train[lab == c][:pool_per_class] for c in range(n_classes)]) if len(train) else train
    pool = interleave(train_labels, pool, _rng(split_seed, seed_key, "pool-order"))
    return {"train": ("train", train), "val": ("train", interleave(train_labels, val_idx, _rng(split_seed, seed_key, "val-order"))),
            "test": test, "pool": ("train", pool)}


def _open_torchvision(spec: DatasetSpec, root: Path, download: bool):
    import torchvision.datasets as tvd

    cls = getattr(tvd, spec.torchvision)
    tv_root = root / "svhn" if spec.name == "svhn" else root
    if download and not spec.can_download:
        raise _missing(spec, root, "cannot be downloaded automatically")
    try:
        if spec.name == "mnist":
            tr, te = cls(str(tv_root), train=True, download=download), cls(str(tv_root), train=False, download=download)
        elif spec.name == "dtd":  # the recipe trains on DTD's train + val partitions
            parts = [cls(str(tv_root), split=s, download=download) for s in ("train", "val")]
            tr, te = torch.utils.data.ConcatDataset(parts), cls(str(tv_root), split="test", download=download)
            tr.classes = parts[0].classes
        elif spec.name in ("eurosat", "sun397"):
            tr, te = cls(str(tv_root), download=download), None
        else:
            tr, te = cls(str(tv_root), split="train", download=download), cls(str(tv_root), split="test", download=download)
    except (RuntimeError, FileNotFoundError, OSError, ValueError) as exc:
        text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        plain_absence = not download and "not found" in text.lower() and "corrupt" not in text.lower()
        raise _missing(spec, root, "" if plain_absence else f"{type(exc).__name__}: {text}", downloading=download) from None
    if spec.name == "sun397":  # torchvision lists SUN397 in filesystem order: make it canonical
        order = sorted(range(len(tr._image_files)), key=lambda i: str(tr._image_files[i]))
        tr._image_files = [tr._image_files[i] for i in order]
        tr._labels = [tr._labels[i] for i in order]
    if spec.class_names is not None:
        names = spec.class_names
    elif spec.name == "eurosat":
        names = tuple(EUROSAT_NAMES.get(c, pretty(c)) for c in tr.classes)
    else:
        names = tuple(pretty(c) for c in tr.classes)
    return tr, te, names


def open_task(name: str, data_root: str | Path, *, folder: str | Path | None = None, download: bool = False,
              split_cfg: Mapping | None = None) -> Source:
    """Open dataset `name` (one of DATASETS, or any name with `folder` = an ImageFolder directory).

    Raises AssetError saying where the dataset is expected and how to get it when it is absent.
    """
    root = Path(data_root).expanduser() if data_root is not None else Path(".")
    cfg = {**SPLIT_DEFAULTS, **(split_cfg or {})}
    spec = DATASETS.get(name) if folder is None else None
    if folder is None and spec is None:
        raise InputError("datasets", f"unknown dataset {name!r}: one of {', '.join(DATASETS)}, or give an "
                                     f"ImageFolder directory as NAME=PATH")
    if spec is not None and spec.torchvision is not None:
        tr, te, names = _open_torchvision(spec, root, download)
        location = spec.where.replace("DATA_ROOT", str(root))
    else:
        path = Path(folder).expanduser() if folder is not None else root / name
        if download:
            raise _missing(spec or name, path if spec is None else root, "cannot be downloaded automatically")
        if not path.is_dir():
            raise _missing(spec or name, path if spec is None else root, "no such directory")
        path = _folder_root(path)
        try:
            if (path / "train").is_dir() and (path / "test").is_dir():
                tr, te = _image_folder(path / "train"), _image_folder(path / "test")
                if tr.classes != te.classes:
                    raise AssetError(str(path), f"dataset {name!r}: train/ and test/ have different class folders")
            else:
                tr, te = _image_folder(path), None
        except (FileNotFoundError, RuntimeError) as exc:
            raise _missing(spec or name, path if spec is None else root, str(exc)) from None
        names = tuple(pretty(c) for c in tr.classes)
        location = str(path)
    if len(names) < 2:
        raise AssetError(location, f"dataset {name!r} has {len(names)} class(es); at least 2")
    tl = _labels_of(tr)
    src = Source(name=name, class_names=names, train=tr, test=te, train_labels=tl,
                 test_labels=_labels_of(te) if te is not None else None,
                 templates=spec.templates if spec else FOLDER_TEMPLATES,
                 title=spec.title if spec else name, description=spec.description if spec else
                 f"A user dataset: {len(names)} classes from the ImageFolder {location}.",
                 location=location, split_cfg=cfg)
    sizes = src.split_sizes()
    for s in ("train", "test"):
        if sizes[s] == 0:
            raise AssetError(location, f"dataset {name!r}: the {s} split is empty (too few images per class)")
    return src


# ------------------------------------------------------------------ preprocessing and the zoo's data

def _resize_crop(image_size: int) -> Callable:
    from torchvision import transforms as TT

    return TT.Compose([TT.Resize(image_size, interpolation=TT.InterpolationMode.BICUBIC), TT.CenterCrop(image_size)])


class PreprocessedSplit(torch.utils.data.Dataset):
    """Images of one split as uint8 [3, H, W] (resized, centre-cropped, RGB) with labels."""

    def __init__(self, source: Source, split: str, image_size: int, indices: np.ndarray | None = None,
                 transform: Callable | None = None):
        which, idx = source.splits()[split]
        self.ds = source.dataset(which)
        self.labels = source.train_labels if which == "train" else source.test_labels
        self.idx = idx if indices is None else indices
        self.rc = _resize_crop(image_size)
        self.transform = transform  # a full PIL -> float tensor transform replaces resize/crop + uint8

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i):
        from torchvision.transforms.functional import pil_to_tensor

        j = int(self.idx[i])
        img, y = self.ds[j]
        img = img.convert("RGB")
        x = self.transform(img) if self.transform is not None else pil_to_tensor(self.rc(img))
        return x, int(self.labels[j])


def load_uint8(source: Source, split: str, n: int | None, image_size: int, workers: int = 0,
               progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images of a split, uint8 [n, 3, H, W], and labels [n] int64."""
    from tqdm.auto import tqdm

    _, idx = source.splits()[split]
    ds = PreprocessedSplit(source, split, image_size, idx[:n] if n is not None else idx)
    if len(ds) == 0:
        return torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    dl = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=False, num_workers=workers)
    xs, ys = [], []
    for x, y in tqdm(dl, desc=f"{source.name}/{split}", disable=not progress, leave=False):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys).long()


def normalize_uint8(x: torch.Tensor, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x.float().div_(255.0) - m) / s


class SplitData:
    """`Zoo.data` for a zoo built on real datasets: (task, split, n) -> (normalised images, labels).

    Datasets are opened lazily on first use (a zoo loads without its data; a missing dataset
    raises the AssetError of `open_task` when first asked for), checked against the fingerprints
    the build recorded, and the loaded images are kept in memory as uint8.
    """

    def __init__(self, tasks: Mapping[str, Mapping], data_root: str | Path | None, image_size: int,
                 mean=OPENAI_MEAN, std=OPENAI_STD, split_cfg: Mapping | None = None, workers: int = 0):
        self.specs = {t: dict(v) for t, v in tasks.items()}
        self.data_root = data_root
        self.image_size = int(image_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.split_cfg = dict(split_cfg or SPLIT_DEFAULTS)
        self.workers = workers
        self._src: dict[str, Source] = {}
        self._mem: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_card(cls, card: Mapping, image_size: int, data_root: str | Path | None = None) -> "SplitData":
        """From a zoo card's `data` section (kind 'datasets'); `data_root` or $RMTLLMF_DATA_ROOT overrides the
        root the build used (a zoo moved to another machine)."""
        import os

        d = card["data"]
        root = data_root or os.environ.get("RMTLLMF_DATA_ROOT") or d.get("root")
        return cls(d["datasets"], root, image_size, d.get("mean", OPENAI_MEAN), d.get("std", OPENAI_STD),
                   d.get("splits"))

    def source(self, task: str) -> Source:
        if task not in self._src:
            spec = self.specs[task]
            src = open_task(task, self.data_root, folder=spec.get("folder"), split_cfg=self.split_cfg)
            want = spec.get("fingerprint")
            if want and src.fingerprint() != want:
                raise AssetError(src.location, f"dataset {task!r} differs from the one this zoo was built on "
                                               f"(labels fingerprint {src.fingerprint()}, the card says {want})")
            self._src[task] = src
        return self._src[task]

    def size(self, task: str, split: str) -> int:
        sizes = self.specs[task].get("sizes")
        return int(sizes[split]) if sizes else self.source(task).split_sizes()[split]

    def __call__(self, task: str, split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if task not in self.specs:
            raise InputError("task", f"unknown task {task!r}; this zoo has {', '.join(self.specs)}")
        if split not in SPLITS:
            raise InputError("split", f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        size = self.size(task, split)
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= size):
            raise InputError("n", f"must be an integer in [0, {size}] for {task}/{split}, got {n!r}")
        want = size if n is None else int(n)
        with self._lock:
            have = self._mem.get((task, split))
            if have is None or len(have[1]) < want:
                self._mem[(task, split)] = load_uint8(self.source(task), split, want, self.image_size, self.workers)
            x, y = self._mem[(task, split)]
        return normalize_uint8(x[:want], self.mean, self.std), y[:want].clone()


def parse_folders(items: Sequence[str], option: str = "folder") -> dict[str, str]:
    """['name=path', ...] -> {name: path} (the --folder and --finetuned options)."""
    out = {}
    for it in items or ():
        name, sep, path = str(it).partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_\-]+", name) or not path:
            raise InputError(option, f"expected NAME=PATH with NAME of letters, digits, '_' or '-', got {it!r}")
        if name in out:
            raise InputError(option, f"{name!r} given twice")
        out[name] = path
    return out
