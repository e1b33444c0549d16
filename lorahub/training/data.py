"""Training data: finding images and captions, aspect-ratio buckets, epochs planned from a seed.

Three layouts are read: images with same-stem `.txt` captions (kohya style), images with a
`metadata.jsonl` (`file_name`, `text`), and a local Hugging Face `datasets` folder. Every bad
file is collected and reported in one TrainingError. Each epoch's batches, flips, crops and
caption dropouts are a pure function of (seed, epoch), so a resumed run sees the same data.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorahub.errors import TrainingError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
TEXT_COLUMNS = ("text", "caption", "prompt")
DATASETS_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
MAX_LISTED = 10


@dataclass(frozen=True)
class Example:
    """One training image: its name in the data set, caption and size (width, height)."""

    name: str
    caption: str
    size: tuple[int, int]
    path: Path | None = None
    row: int | None = None


@dataclass(frozen=True)
class Item:
    """One draw of an example in an epoch: which flip, crop position and caption dropout."""

    index: int
    flip: bool = False
    crop: tuple[float, float] = (0.5, 0.5)
    drop_caption: bool = False


@dataclass
class DataSet:
    """The examples of a data folder, and how to open their images."""

    root: Path
    kind: str
    examples: list[Example]
    rows: Any = field(default=None, repr=False)  # a datasets.Dataset for kind="datasets"
    image_column: str | None = None

    def open(self, index: int) -> Any:
        """The example's image as an RGB PIL image."""
        ex = self.examples[index]
        if ex.path is not None:
            from PIL import Image

            try:
                with Image.open(ex.path) as img:
                    return img.convert("RGB")
            except OSError as exc:
                raise TrainingError(f"cannot read image {ex.name}: {exc}") from None
        return self.rows[ex.row][self.image_column].convert("RGB")

    def digest(self) -> str:
        """sha256 of every name, caption and image byte: the data set's identity in lineage."""
        h = hashlib.sha256()
        for i, ex in sorted(enumerate(self.examples), key=lambda p: p[1].name):
            h.update(f"{ex.name}\0{ex.caption}\0".encode())
            if ex.path is not None:
                h.update(ex.path.read_bytes())
            else:
                h.update(self.open(i).tobytes())
        return h.hexdigest()

    def tag_frequency(self) -> dict[str, int]:
        """How often each comma-separated caption tag occurs (kohya's ss_tag_frequency)."""
        counts: dict[str, int] = {}
        for ex in self.examples:
            for tag in filter(None, (t.strip() for t in ex.caption.split(","))):
                counts[tag] = counts.get(tag, 0) + 1
        return counts


def load_dataset(folder: str | Path, instance_prompt: str | None = None) -> DataSet:
    """Read a data folder in any supported layout; one TrainingError lists every bad file.

    `demo` (when no folder of that name exists) is the built-in synthetic shapes set.
    """
    root = Path(folder).expanduser()
    if str(folder) == DEMO_DATA and not root.exists():
        root = builtin_demo_data()
    if not str(folder) or not root.is_dir():
        raise TrainingError(f"data folder not found: {folder or '(none given)'}")
    if any((root / m).exists() for m in DATASETS_MARKERS):
        return _load_hf(root, instance_prompt)
    if (root / "metadata.jsonl").exists():
        return _load_metadata(root, instance_prompt)
    return _load_captioned(root, instance_prompt)


DEMO_DATA = "demo"


def builtin_demo_data() -> Path:
    """The built-in data set: purple shapes (the colour the tiny bases never saw), 64x64,
    written once into the lorahub cache."""
    from lorahub.paths import lorahub_cache
    from lorahub.training.demo import HELD_OUT, demo_dataset

    dest = lorahub_cache() / "datasets" / "demo-purple"
    return dest if dest.is_dir() else demo_dataset(dest, size=64, colours=tuple(HELD_OUT))


def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def _image_size(path: Path) -> tuple[int, int] | None:
    """The image's (width, height), or None if PIL cannot read all of it.

    The image is decoded once (verify alone passes a truncated JPEG), so a broken file is
    reported here with every other bad file, not later in the middle of training."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            img.load()
            return img.size
    except Exception:  # PIL raises many kinds for a broken file
        return None


def _report(root: Path, unreadable: list[str], uncaptioned: list[str], other: list[str]) -> None:
    """Raise one TrainingError naming the bad files (the first few of each kind)."""
    parts = []
    for label, names in (
        ("unreadable images", unreadable),
        ("images without a caption (add .txt files or pass --instance-prompt)", uncaptioned),
        ("problems", other),
    ):
        if names:
            shown = ", ".join(names[:MAX_LISTED])
            more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
            parts.append(f"{len(names)} {label}: {shown}{more}")
    if parts:
        raise TrainingError(f"bad data folder {root}: " + "; ".join(parts))


def _build(
    root: Path,
    kind: str,
    pairs: list[tuple[Path, str | None]],
    instance: str | None,
    other: list[str] | None = None,
) -> DataSet:
    """Check every (image, caption) pair and make the examples, or report every bad file."""
    unreadable, uncaptioned, examples = [], [], []
    for path, caption in pairs:
        name = path.relative_to(root).as_posix()
        size = _image_size(path)
        text = caption if caption and caption.strip() else instance
        if size is None:
            unreadable.append(name)
        if not text:
            uncaptioned.append(name)
        if size is not None and text:
            examples.append(Example(name, text.strip(), size, path=path))
    _report(root, unreadable, uncaptioned, other or [])
    if not examples:
        raise TrainingError(f"no images found in {root} (looked for {', '.join(IMAGE_EXTS)})")
    return DataSet(root, kind, examples)


def _load_captioned(root: Path, instance: str | None) -> DataSet:
    pairs: list[tuple[Path, str | None]] = []
    unreadable: list[str] = []
    for path in _image_files(root):
        txt = path.with_suffix(".txt")
        try:
            pairs.append((path, txt.read_text(errors="replace") if txt.exists() else None))
        except OSError:  # a caption that is a folder, or not readable by this user
            unreadable.append(txt.relative_to(root).as_posix())
    bad = [f"{name} (unreadable caption)" for name in unreadable]
    return _build(root, "captions", pairs, instance, bad)


def _load_metadata(root: Path, instance: str | None) -> DataSet:
    captions: dict[str, str] = {}
    problems = []
    for n, line in enumerate((root / "metadata.jsonl").read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            captions[str(row["file_name"])] = str(row.get("text") or "")
        except (ValueError, KeyError, TypeError):
            problems.append(f"metadata.jsonl line {n} (needs file_name and text)")
    missing = [name for name in captions if not (root / name).is_file()]
    problems += [f"{name} (in metadata.jsonl, file missing)" for name in missing]
    _report(root, [], [], problems)
    pairs: list[tuple[Path, str | None]] = [(root / n, t) for n, t in sorted(captions.items())]
    listed = {p for p, _ in pairs}
    pairs += [(p, None) for p in _image_files(root) if p not in listed]
    return _build(root, "metadata", pairs, instance)


def _load_hf(root: Path, instance: str | None) -> DataSet:
    try:
        import datasets
    except ImportError:
        raise TrainingError(
            f"{root} is a Hugging Face datasets folder: install the extra (pip install 'lorahub[datasets]')"
        ) from None
    ds = datasets.load_from_disk(str(root))
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"] if "train" in ds else ds[next(iter(ds))]
    image_col = next((c for c, f in ds.features.items() if isinstance(f, datasets.Image)), None)
    text_col = next((c for c in TEXT_COLUMNS if c in ds.features), None)
    if image_col is None:
        raise TrainingError(f"datasets folder {root} has no image column")
    examples, uncaptioned = [], []
    for i in range(len(ds)):
        row = ds[i]
        text = (row.get(text_col) if text_col else None) or instance
        if not text:
            uncaptioned.append(f"row {i}")
            continue
        examples.append(Example(f"row-{i:06d}", str(text).strip(), row[image_col].size, row=i))
    _report(root, [], uncaptioned, [])
    if not examples:
        raise TrainingError(f"datasets folder {root} has no rows")
    return DataSet(root, "datasets", examples, rows=ds, image_column=image_col)


def split_holdout(n: int, holdout: int, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, held out): `holdout` examples chosen by the seed, never all of them."""
    if holdout and holdout >= n:
        raise TrainingError(f"holdout {holdout} leaves no training images (the data has {n})")
    held = sorted(random.Random(f"holdout-{seed}").sample(range(n), holdout)) if holdout else []
    keep = set(held)
    return [i for i in range(n) if i not in keep], held


def make_buckets(resolution: int, multiple: int, max_ratio: float = 2.0) -> list[tuple[int, int]]:
    """(width, height) buckets of about resolution² pixels, sides multiples of `multiple`."""
    area, out = resolution * resolution, {(resolution, resolution)}
    for w in range(multiple, 4 * resolution + 1, multiple):
        h = max(multiple, int(area / w) // multiple * multiple)
        if 1 / max_ratio <= w / h <= max_ratio:
            out.add((w, h))
    return sorted(out)


def pick_bucket(size: tuple[int, int], buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is nearest the image's (in log space)."""
    ratio = math.log(size[0] / size[1])
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ratio), -b[0] * b[1]))


def crop_geometry(
    size: tuple[int, int], bucket: tuple[int, int], crop: tuple[float, float], center: bool
) -> tuple[tuple[int, int], tuple[int, int]]:
    """((resized w, h), (top, left)): scale to cover the bucket, then crop at `crop` fractions."""
    w, h = size
    scale = max(bucket[0] / w, bucket[1] / h)
    rw, rh = max(bucket[0], round(w * scale)), max(bucket[1], round(h * scale))
    fx, fy = (0.5, 0.5) if center else crop
    return (rw, rh), (int(round((rh - bucket[1]) * fy)), int(round((rw - bucket[0]) * fx)))


def plan_epoch(
    buckets: list[tuple[int, int]],
    indices: list[int],
    batch_size: int,
    seed: int,
    epoch: int,
    *,
    flip: bool,
    caption_dropout: float,
) -> list[list[Item]]:
    """The epoch's batches (one bucket each, shuffled), a pure function of (seed, epoch)."""
    rng = random.Random(f"epoch-{seed}-{epoch}")
    groups: dict[tuple[int, int], list[int]] = {}
    for i in indices:
        groups.setdefault(buckets[i], []).append(i)
    batches: list[list[int]] = []
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        batches += [members[k : k + batch_size] for k in range(0, len(members), batch_size)]
    rng.shuffle(batches)
    return [[_draw(rng, i, flip, caption_dropout) for i in batch] for batch in batches]


def _draw(rng: random.Random, index: int, flip: bool, dropout: float) -> Item:
    flipped = rng.random() < 0.5
    crop = (rng.random(), rng.random())
    dropped = rng.random() < dropout
    return Item(index, flip and flipped, crop, dropout > 0 and dropped)


def epoch_length(buckets: list[tuple[int, int]], indices: list[int], batch_size: int) -> int:
    """Batches per epoch (the same for every epoch)."""
    counts: dict[tuple[int, int], int] = {}
    for i in indices:
        counts[buckets[i]] = counts.get(buckets[i], 0) + 1
    return sum(math.ceil(c / batch_size) for c in counts.values())


def load_pixels(data: DataSet, item: Item, bucket: tuple[int, int], center: bool) -> Any:
    """The item's image resized, cropped to its bucket, flipped if drawn, as a [-1, 1] tensor."""
    import numpy as np
    import torch
    from PIL import Image

    (rw, rh), (top, left) = crop_geometry(data.examples[item.index].size, bucket, item.crop, center)
    img = data.open(item.index).resize((rw, rh), Image.Resampling.BICUBIC)
    img = img.crop((left, top, left + bucket[0], top + bucket[1]))
    if item.flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def time_ids(data: DataSet, item: Item, bucket: tuple[int, int], center: bool) -> list[int]:
    """SDXL's add_time_ids: original (h, w), crop (top, left), target (h, w)."""
    w, h = data.examples[item.index].size
    (rw, _), (top, left) = crop_geometry((w, h), bucket, item.crop, center)
    if item.flip:
        left = rw - bucket[0] - left
    return [h, w, top, left, bucket[1], bucket[0]]
