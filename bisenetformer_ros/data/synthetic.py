"""Procedural street-like scenes with exact panoptic ground truth: the data for CI and for the embedded default model.

Why synthetic: ImageNet weights, Cityscapes and ADE20K cannot be downloaded where this project is built and tested,
yet the whole pipeline (training, evaluation, the node, rosbag scoring) needs a model that really segments.

What makes it more than a toy:
- every class is defined by *shape or texture*, not by colour: thing colours are drawn from one shared distribution
  (so a red ball and a red crate exist), stuff textures are recoloured per image, and global colour jitter and noise
  are applied, so a model that only memorises colours fails;
- several instances per thing class, drawn back to front so they occlude each other and the stuff;
- scale varies by ~5x, positions and counts vary, stuff layout (horizon, wall, grass patches) varies per image;
- scenes are deterministic functions of ``(seed, t)``: ``t`` moves objects smoothly, which gives camera sequences for
  rosbags with ground truth at every frame;
- *tracking sequences* (:func:`render_sequence_frame`): the same scenes with faster objects that cross each other
  (near ones hide far ones), leave the frame and come back, with the ground-truth identity of every object over time
  (``SceneSegment.track_id``), for the video metrics (STQ, VPQ, ID switches).

Class ids are contiguous (``SYNTHETIC`` class table); pixels are never unlabelled (every pixel belongs to a stuff
region or a thing), so ``ignore_label`` (255) does not occur in the ground truth.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bisenetformer_ros.data.classes import ClassTable

STUFF = ("sky", "wall", "ground", "grass")
THINGS = ("ball", "crate", "cone", "ring")

SYNTHETIC = ClassTable(
    dataset="synthetic",
    names=STUFF + THINGS,
    colors=(
        (70, 130, 180),
        (190, 153, 153),
        (128, 64, 128),
        (107, 142, 35),
        (220, 20, 60),
        (0, 0, 142),
        (250, 170, 30),
        (119, 11, 32),
    ),
    is_thing=(False,) * len(STUFF) + (True,) * len(THINGS),
)
SKY, WALL, GROUND, GRASS = range(4)
BALL, CRATE, CONE, RING = range(4, 8)

#: Seeds of the standard splits. The held-out split uses a disjoint seed range from training.
TRAIN_SEED = 0
VAL_SEED = 1_000_000
#: Default size of the standard splits (images are small so that a CPU can train and evaluate in minutes).
DEFAULT_SIZE = (128, 128)
DEFAULT_VAL_IMAGES = 64


@dataclass(frozen=True)
class SceneSegment:
    """One ground-truth segment in COCO-panoptic terms (``id`` is its value in the panoptic id map)."""

    id: int
    category_id: int
    isthing: bool
    area: int
    bbox: tuple[int, int, int, int]  # x, y, w, h
    #: Identity of a thing over the frames of a sequence (the object's number in its scene); 0 for stuff.
    track_id: int = 0

    def to_coco(self) -> dict[str, Any]:
        return {
            "id": int(self.id),
            "category_id": int(self.category_id),
            "iscrowd": 0,
            "area": int(self.area),
            "bbox": [int(v) for v in self.bbox],
        }


@dataclass
class Scene:
    """A rendered frame: RGB image, semantic class map, panoptic id map (0 = void, unused here) and segments."""

    image: np.ndarray  # HxWx3 uint8 RGB
    semantic: np.ndarray  # HxW uint8 class ids
    panoptic: np.ndarray  # HxW int32 segment ids
    segments: list[SceneSegment]


def _noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth value noise in [0, 1]: random values on a coarse grid, bicubic-upsampled (resolution independent)."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _hsv_color(
    rng: np.random.Generator, h_range: tuple[float, float], s_range: tuple[float, float], v_range: tuple[float, float]
) -> np.ndarray:
    hsv = np.array(
        [[[rng.uniform(*h_range) % 180, rng.uniform(*s_range), rng.uniform(*v_range)]]], dtype=np.float32
    ).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _random_thing_color(rng: np.random.Generator) -> np.ndarray:
    """All thing classes share this colour distribution: colour never identifies a thing class."""
    return _hsv_color(rng, (0, 180), (60, 255), (70, 255))


class _Layout:
    """Per-seed scene parameters in normalised coordinates; rendering at any size and time ``t`` uses them."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.horizon = rng.uniform(0.25, 0.5)
        self.has_wall = rng.random() < 0.75
        x0 = rng.uniform(-0.2, 0.6)
        self.wall = (x0, x0 + rng.uniform(0.3, 0.8), self.horizon - rng.uniform(0.1, self.horizon))
        self.brick = (rng.uniform(0.03, 0.07), rng.uniform(0.02, 0.04))
        self.grass = [
            (
                rng.uniform(0, 1),
                rng.uniform(self.horizon, 1.0),
                rng.uniform(0.08, 0.3),
                rng.uniform(0.04, 0.15),
                rng.uniform(0, 180),
            )
            for _ in range(int(rng.integers(0, 4)))
        ]
        self.colors = {
            SKY: _hsv_color(rng, (95, 125), (30, 200), (120, 255)),
            WALL: _hsv_color(rng, (0, 180), (20, 160), (90, 230)),
            GROUND: _hsv_color(rng, (0, 180), (0, 90), (60, 200)),
            GRASS: _hsv_color(rng, (30, 80), (80, 255), (60, 220)),
        }
        self.texture_seed = int(rng.integers(1 << 31))
        n = int(rng.integers(3, 11))
        self.things = []
        for _ in range(n):
            cls = int(rng.choice([BALL, CRATE, CONE, RING]))
            y = rng.uniform(self.horizon - 0.1, 0.95)
            # Perspective-like scale: objects lower in the image are bigger (size varies about 5x overall).
            size = rng.uniform(0.06, 0.12) * (0.6 + 1.6 * (y - self.horizon + 0.1))
            self.things.append(
                {
                    "cls": cls,
                    "x": rng.uniform(0.05, 0.95),
                    "y": y,
                    "size": float(size),
                    "aspect": rng.uniform(0.6, 1.5),
                    "angle": rng.uniform(0, 360),
                    "spin": rng.uniform(-40, 40),
                    "vx": rng.uniform(-0.08, 0.08),
                    "vy": rng.uniform(-0.02, 0.02),
                    "color": _random_thing_color(rng),
                    "color2": _random_thing_color(rng),
                    "shade": rng.uniform(0.3, 0.8),
                }
            )
        self.things.sort(key=lambda o: o["y"] + o["size"])  # far (high in the image) first: near ones occlude them
        self.jitter = (rng.uniform(0.8, 1.2), rng.uniform(-20, 20), rng.uniform(3, 10))  # contrast, brightness, noise


def _stuff_layer(layout: _Layout, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    img = np.zeros((h, w, 3), np.float32)
    sem = np.full((h, w), GROUND, np.uint8)
    hy = round(layout.horizon * h)
    sem[:hy] = SKY
    if layout.has_wall:
        x0, x1, top = layout.wall
        sem[max(0, int(top * h)) : hy, max(0, int(x0 * w)) : max(0, int(x1 * w))] = WALL
    for cx, cy, ax, ay, ang in layout.grass:
        mask = np.zeros((h, w), np.uint8)
        cv2.ellipse(mask, (int(cx * w), int(cy * h)), (max(1, int(ax * w)), max(1, int(ay * h))), ang, 0, 360, 1, -1)
        sem[(mask > 0) & (sem == GROUND)] = GRASS
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Sky: vertical gradient + soft clouds.
    sky = layout.colors[SKY][None, None] * (0.75 + 0.35 * (yy / max(h, 1)))[..., None]
    sky += 40 * _noise(rng, h, w, 3)[..., None]
    # Wall: bricks (mortar lines) — the texture, not the colour, identifies it.
    bw, bh = layout.brick
    row = np.floor(yy / max(1.0, bh * h))
    offset = (row % 2) * 0.5 * bw * w
    mortar = ((yy % max(2.0, bh * h)) < max(1.0, 0.18 * bh * h)) | (
        ((xx + offset) % max(2.0, bw * w)) < max(1.0, 0.12 * bw * w)
    )
    wall = layout.colors[WALL][None, None] * (0.85 + 0.3 * _noise(rng, h, w, 8))[..., None]
    wall[mortar] = wall[mortar] * 0.45 + 90
    # Ground: fine speckle noise. Grass: oriented blades (high-frequency vertical stripes).
    ground = layout.colors[GROUND][None, None] * (0.7 + 0.6 * _noise(rng, h, w, max(4, w // 6)))[..., None]
    blades = 0.5 + 0.5 * np.sin(xx * (2 * math.pi / max(2.0, w / 40)) + 3 * _noise(rng, h, w, 6))
    grass = layout.colors[GRASS][None, None] * (0.55 + 0.6 * blades)[..., None]
    for cls, tex in ((SKY, sky), (WALL, wall), (GROUND, ground), (GRASS, grass)):
        m = sem == cls
        img[m] = tex[m]
    return img, sem


class _SequenceLayout(_Layout):
    """A scene for tracking: the layout of ``seed`` with objects that move 3-10x faster, horizontally, bouncing
    between -0.35 and 1.35 of the width, so they cross each other, enter, leave the frame and come back."""

    #: Horizontal range objects bounce in (normalised); beyond 0..1 they are out of view.
    BOUNCE = (-0.35, 1.35)

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        rng = np.random.default_rng(seed + 7_777_777)
        for obj in self.things:
            obj["x"] = float(rng.uniform(self.BOUNCE[0] + 0.05, self.BOUNCE[1] - 0.05))  # some start out of view
            obj["vx"] = float(rng.uniform(0.06, 0.22) * rng.choice([-1.0, 1.0]))
            obj["vy"] = float(rng.uniform(-0.01, 0.01))
            obj["spin"] = float(rng.uniform(-15, 15))


def _bounce(x: float, lo: float, hi: float) -> float:
    """Position of a point moving freely on the line, reflected into ``[lo, hi]``."""
    u = (x - lo) / (hi - lo)
    u = 1 - abs(1 - (u % 2)) if not 0 <= u <= 1 else u
    return lo + u * (hi - lo)


def _thing_mask(obj: dict[str, Any], h: int, w: int, t: float, bounce: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Binary mask of one object at time ``t`` (moves with constant velocity, bouncing inside ``bounce``, by default
    the frame)."""
    x = _bounce(obj["x"] + obj["vx"] * t, *bounce)
    y = min(0.98, max(0.02, obj["y"] + obj["vy"] * t))
    cx, cy = x * w, y * h
    r = obj["size"] * min(h, w) * 1.6
    ang = obj["angle"] + obj["spin"] * t
    mask = np.zeros((h, w), np.uint8)
    cls = obj["cls"]
    if cls == BALL:
        cv2.circle(mask, (int(cx), int(cy)), max(1, int(r)), 1, -1, lineType=cv2.LINE_8)
    elif cls == CRATE:
        box = cv2.boxPoints(((cx, cy), (2 * r * obj["aspect"], 2 * r), ang))
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    elif cls == CONE:
        pts = np.array([[cx, cy - 1.3 * r], [cx - r * obj["aspect"], cy + r], [cx + r * obj["aspect"], cy + r]])
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    else:  # RING: an annulus (hole shows what is behind it)
        cv2.circle(mask, (int(cx), int(cy)), max(2, int(r)), 1, max(1, int(0.35 * r)))
    return mask.astype(bool)


def _paint_thing(img: np.ndarray, mask: np.ndarray, obj: dict[str, Any], h: int, w: int) -> None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return
    base, second = obj["color"], obj["color2"]
    cls = obj["cls"]
    if cls == BALL:  # radial shading
        cx, cy = xs.mean() - 0.3 * (xs.max() - xs.min()), ys.mean() - 0.3 * (ys.max() - ys.min())
        rad = max(1.0, 0.5 * (xs.max() - xs.min() + 1))
        d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) / (1.6 * rad)
        img[ys, xs] = base[None] * (1.15 - obj["shade"] * np.clip(d, 0, 1))[:, None]
    elif cls == CRATE:  # planks: two-tone stripes along one axis
        period = max(2.0, 0.25 * (ys.max() - ys.min() + 1))
        stripe = ((ys - ys.min()) // period) % 2 == 0
        img[ys, xs] = np.where(stripe[:, None], base[None], 0.6 * base[None] + 0.4 * second[None])
    elif cls == CONE:  # horizontal bands of a second colour
        period = max(2.0, 0.2 * (ys.max() - ys.min() + 1))
        band = ((ys - ys.min()) // period) % 3 == 1
        img[ys, xs] = np.where(band[:, None], second[None], base[None])
    else:  # RING: uniform with a slight gradient
        img[ys, xs] = base[None] * (0.85 + 0.3 * (xs - xs.min())[:, None] / max(1, xs.max() - xs.min()))


def render_scene(seed: int, height: int = DEFAULT_SIZE[0], width: int = DEFAULT_SIZE[1], t: float = 0.0) -> Scene:
    """Render scene ``seed`` at ``t`` seconds: objects move smoothly with ``t`` (same layout, textures, colours)."""
    return _render(_Layout(seed), seed, height, width, t, (0.0, 1.0))


def render_sequence_frame(
    seed: int, height: int = DEFAULT_SIZE[0], width: int = DEFAULT_SIZE[1], t: float = 0.0
) -> Scene:
    """Frame at ``t`` seconds of tracking sequence ``seed``: moving, occluding, leaving and returning objects; each
    thing segment carries its object's identity in ``track_id`` (stable over the sequence, 1-based)."""
    return _render(_SequenceLayout(seed), seed, height, width, t, _SequenceLayout.BOUNCE)


def _render(layout: _Layout, seed: int, height: int, width: int, t: float, bounce: tuple[float, float]) -> Scene:
    if height < 8 or width < 8:
        raise ValueError(f"synthetic scenes need at least 8x8 pixels, got {height}x{width}")
    rng = np.random.default_rng(layout.texture_seed)
    img, sem = _stuff_layer(layout, height, width, rng)
    inst = np.zeros((height, width), np.int32)
    inst_cls: dict[int, int] = {}
    for k, obj in enumerate(layout.things, start=1):
        mask = _thing_mask(obj, height, width, t, bounce)
        _paint_thing(img, mask, obj, height, width)
        sem[mask] = obj["cls"]
        inst[mask] = k
        inst_cls[k] = obj["cls"]
    contrast, brightness, noise_sigma = layout.jitter
    img = (
        img * contrast
        + brightness
        + np.random.default_rng(seed * 7919 + int(t * 1000)).normal(0, noise_sigma, img.shape)
    )
    image = np.clip(img, 0, 255).astype(np.uint8)
    return _to_scene(image, sem, inst, inst_cls)


def _to_scene(image: np.ndarray, sem: np.ndarray, inst: np.ndarray, inst_cls: dict[int, int]) -> Scene:
    """Build the panoptic id map: one segment per visible thing instance, one per present stuff class."""
    pan = np.zeros(sem.shape, np.int32)
    segments: list[SceneSegment] = []
    next_id = 1
    for cls in range(len(STUFF)):
        m = (sem == cls) & (inst == 0)
        if m.any():
            pan[m] = next_id
            segments.append(_segment(next_id, cls, False, m))
            next_id += 1
    for k, cls in inst_cls.items():
        m = inst == k
        if m.sum() >= 4:  # fully hidden or sub-pixel instances are not annotated (as in real datasets)
            pan[m] = next_id
            segments.append(_segment(next_id, cls, True, m, track_id=k))
            next_id += 1
        else:
            sem[m] = sem[m]  # keep the class label; the pixels stay void in the panoptic map
    return Scene(image=image, semantic=sem, panoptic=pan, segments=segments)


def _segment(seg_id: int, cls: int, isthing: bool, mask: np.ndarray, track_id: int = 0) -> SceneSegment:
    ys, xs = np.nonzero(mask)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    return SceneSegment(
        id=seg_id, category_id=cls, isthing=isthing, area=int(mask.sum()), bbox=bbox, track_id=int(track_id)
    )


def encode_panoptic_png(ids: np.ndarray) -> np.ndarray:
    """COCO-panoptic PNG encoding: id = R + 256 G + 256^2 B (returned as HxWx3 uint8 RGB)."""
    ids = ids.astype(np.uint32)
    return np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], axis=-1).astype(np.uint8)


def decode_panoptic_png(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 RGB of a COCO-panoptic PNG -> HxW int32 segment ids (inverse of :func:`encode_panoptic_png`)."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]).astype(np.int32)


def write_dataset(
    out_dir: str | Path,
    split: str,
    num_images: int,
    seed: int,
    height: int = DEFAULT_SIZE[0],
    width: int = DEFAULT_SIZE[1],
    progress: bool = True,
) -> Path:
    """Write a COCO-panoptic dataset split: ``images/<split>/*.png``, ``panoptic/<split>/*.png``,
    ``panoptic_<split>.json`` (images, annotations with segments_info, categories) and ``semantic/<split>/*.png``.

    Image ``i`` is ``render_scene(seed + i)``: the same seed always gives the same files.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    for sub in ("images", "panoptic", "semantic"):
        (out / sub / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in tqdm(range(num_images), desc=f"synthetic {split}", disable=not progress, unit="img"):
        scene = render_scene(seed + i, height, width)
        name = f"{split}_{seed + i:08d}"
        cv2.imwrite(str(out / "images" / split / f"{name}.png"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(
            str(out / "panoptic" / split / f"{name}.png"),
            cv2.cvtColor(encode_panoptic_png(scene.panoptic), cv2.COLOR_RGB2BGR),
        )
        cv2.imwrite(str(out / "semantic" / split / f"{name}.png"), scene.semantic)
        images.append({"id": i, "file_name": f"{name}.png", "height": height, "width": width})
        annotations.append(
            {"image_id": i, "file_name": f"{name}.png", "segments_info": [s.to_coco() for s in scene.segments]}
        )
    categories = [
        {"id": i, "name": n, "isthing": int(t), "color": list(c)}
        for i, (n, t, c) in enumerate(zip(SYNTHETIC.names, SYNTHETIC.is_thing, SYNTHETIC.colors, strict=False))
    ]
    meta = {
        "info": {"description": "bisenetformer_ros synthetic scenes", "seed": seed, "split": split},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    (out / f"panoptic_{split}.json").write_text(json.dumps(meta))
    return out
