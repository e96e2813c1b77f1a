"""The training maths on hand-checkable cases: Hungarian matching, the set criterion, point sampling, targets and
augmentation.

Everything here is a real computation compared with an independent one (a brute-force loop, a hand-weighted cross
entropy, an annotation whose semantic map is a known function of its panoptic map), so a regression in any of the
pieces that decide *what the network is trained towards* shows up as a number, not as a slowly worse model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bisenetformer_ros.data.classes import IGNORE_LABEL
from bisenetformer_ros.data.sample import Sample, SegmentInfo, semantic_from_panoptic
from bisenetformer_ros.data.transforms import AugmentConfig, Augmenter, crop_at, pad_to, photometric_distortion
from bisenetformer_ros.model import ModelConfig, build_model
from bisenetformer_ros.train.criterion import CriterionConfig, SetCriterion
from bisenetformer_ros.train.matcher import HungarianMatcher, pairwise_bce_cost, pairwise_dice_cost
from bisenetformer_ros.train.points import uncertain_point_coords
from bisenetformer_ros.train.targets import Targets, build_targets
from tests.inference_models import TINY

K = 6  # classes in the hand-built cases (logits have K + 1 entries: the last one is "no object")
S = 16  # mask side length of the hand-built cases


# -- a matching problem whose answer is obvious ------------------------------------------------------------------------


def _halves() -> Targets:
    """Two targets: the left half is class 2, the right half class 5."""
    masks = torch.zeros(2, S, S)
    masks[0, :, : S // 2] = 1
    masks[1, :, S // 2 :] = 1
    return Targets(torch.tensor([2, 5]), masks)


def _three_queries(class_logits: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Query 0 predicts nothing, query 1 the right half, query 2 the left half (±10 logits: no doubt anywhere).

    The optimal assignment (target 0 -> query 2, target 1 -> query 1) is therefore *not* the identity, so a matcher
    that ignored its cost matrix, or transposed it, fails.
    """
    masks = torch.full((1, 3, S, S), -10.0)
    masks[0, 1, :, S // 2 :] = 10.0
    masks[0, 2, :, : S // 2] = 10.0
    if class_logits is None:
        class_logits = torch.zeros(1, 3, K + 1)
        class_logits[0, 0, K] = 5.0
        class_logits[0, 1, 5] = 5.0
        class_logits[0, 2, 2] = 5.0
    return {"pred_logits": class_logits, "pred_masks": masks}


def test_matcher_finds_the_obvious_non_identity_assignment() -> None:
    torch.manual_seed(0)
    out = _three_queries()
    empty = Targets(torch.zeros(0, dtype=torch.int64), torch.zeros(0, S, S))
    # Batch of two images, the second without any target: its indices must be empty, the first unaffected.
    logits = out["pred_logits"].expand(2, -1, -1)
    masks = out["pred_masks"].expand(2, -1, -1, -1)
    indices = HungarianMatcher(num_points=1024)(logits, masks, [_halves(), empty])
    (q0, t0), (q1, t1) = indices
    assert q0.tolist() == [1, 2] and t0.tolist() == [1, 0]
    assert q0.dtype == t0.dtype == torch.int64
    assert q1.numel() == 0 and t1.numel() == 0 and q1.dtype == torch.int64


def test_matcher_uses_masks_not_only_classes() -> None:
    """Class scores that point the wrong way lose against clearly better masks (cost 5+5 vs 2)."""
    torch.manual_seed(0)
    wrong = torch.zeros(1, 3, K + 1)
    wrong[0, 1, 2] = 5.0  # query 1 (right-half mask) says class 2 = the left target's class
    wrong[0, 2, 5] = 5.0
    out = _three_queries(wrong)
    (q, t) = HungarianMatcher(num_points=1024)(out["pred_logits"], out["pred_masks"], [_halves()])[0]
    assert dict(zip(t.tolist(), q.tolist(), strict=True)) == {0: 2, 1: 1}


def test_pairwise_costs_equal_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(5, 40, generator=g, dtype=torch.float64) * 3
    # targets as point_sample produces them: mostly 0/1 with some fractional values at boundaries
    target = (torch.rand(3, 40, generator=g, dtype=torch.float64) > 0.5).double()
    target[:, :4] = torch.rand(3, 4, generator=g, dtype=torch.float64)
    bce = pairwise_bce_cost(pred, target)
    dice = pairwise_dice_cost(pred, target)
    assert bce.shape == dice.shape == (5, 3)
    for q in range(5):
        for n in range(3):
            ref_bce = F.binary_cross_entropy_with_logits(pred[q], target[n])  # mean over points
            p = pred[q].sigmoid()
            ref_dice = 1 - (2 * (p * target[n]).sum() + 1) / (p.sum() + target[n].sum() + 1)
            assert abs(float(bce[q, n] - ref_bce)) < 1e-6
            assert abs(float(dice[q, n] - ref_dice)) < 1e-6


# -- the criterion -----------------------------------------------------------------------------------------------------


def test_deep_supervision_logs_every_decoder_layer() -> None:
    """With the real (tiny) network: one suffixed set of terms per auxiliary prediction, the final one unsuffixed."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=K, **TINY)).train()
    out = model(torch.randn(2, 3, 64, 64))
    num_aux = len(out["aux_outputs"])
    assert num_aux == TINY["dec_layers"]  # query-only prediction + one per layer; the last is the final output
    masks = torch.zeros(3, 64, 64)
    masks[0, :32], masks[1, 32:, :20], masks[2, 32:, 20:] = 1, 1, 1
    targets = [Targets(torch.tensor([0, 3, 4]), masks), Targets(torch.tensor([1]), torch.ones(1, 64, 64))]
    cfg = CriterionConfig(num_points=256)
    losses = SetCriterion(K, cfg)(out, targets)
    terms = ("loss_ce", "loss_mask", "loss_dice")
    expected = {*terms, "loss"} | {f"{t}_{i}" for t in terms for i in range(num_aux)}
    assert set(losses) == expected
    # 'loss' is the weighted sum over every layer (summation order differs, hence allclose)
    weights = {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0}
    logged = {k: v for k, v in losses.items() if k != "loss"}
    recomputed = sum(weights[k.rsplit("_", 1)[0] if k[-1].isdigit() else k] * v for k, v in logged.items())
    torch.testing.assert_close(losses["loss"].detach(), recomputed, rtol=1e-6, atol=1e-6)
    # every layer receives gradient
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.decoder.class_embed.parameters())
    # without deep supervision the auxiliary predictions are ignored
    final_only = SetCriterion(K, CriterionConfig(num_points=256, deep_supervision=False))(out, targets)
    assert set(final_only) == {*terms, "loss"}


def test_no_object_class_is_weighted_one_tenth() -> None:
    torch.manual_seed(0)
    class_logits = torch.randn(1, 3, K + 1, generator=torch.Generator().manual_seed(3))
    out = _three_queries(class_logits)
    losses = SetCriterion(K, CriterionConfig(num_points=512))(out, [_halves()])
    # matching is obvious (see _three_queries): query 0 -> no object, query 1 -> class 5, query 2 -> class 2
    target_classes = torch.tensor([K, 5, 2])
    per_query = F.cross_entropy(class_logits[0], target_classes, reduction="none")
    w = torch.tensor([0.1, 1.0, 1.0])
    expected = (w * per_query).sum() / w.sum()
    assert abs(float(losses["loss_ce"]) - float(expected)) < 1e-6
    assert abs(float(expected) - float(per_query.mean())) > 1e-3  # the weighting is visible in this case


def test_total_loss_is_2_5_5_combination() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    out = {"pred_logits": torch.randn(2, 5, K + 1, generator=g), "pred_masks": torch.randn(2, 5, S, S, generator=g)}
    targets = [_halves(), Targets(torch.tensor([1]), torch.ones(1, S, S))]
    crit = SetCriterion(K)  # default config: the paper's weights
    assert (crit.config.class_weight, crit.config.mask_weight, crit.config.dice_weight) == (2.0, 5.0, 5.0)
    crit.config.num_points = 256
    losses = crit(out, targets)  # no 'aux_outputs': only the final terms
    assert set(losses) == {"loss", "loss_ce", "loss_mask", "loss_dice"}
    total = torch.zeros(()) + 2.0 * losses["loss_ce"] + 5.0 * losses["loss_mask"] + 5.0 * losses["loss_dice"]
    assert torch.equal(losses["loss"].detach(), total)
    assert all(float(v) > 0 for v in losses.values())


def test_no_targets_give_finite_zero_mask_losses() -> None:
    """An image without segments (all void) still trains the classifier towards "no object" and nothing else."""
    out = {"pred_logits": torch.randn(1, 4, K + 1), "pred_masks": torch.randn(1, 4, S, S, requires_grad=True)}
    empty = Targets(torch.zeros(0, dtype=torch.int64), torch.zeros(0, S, S))
    losses = SetCriterion(K, CriterionConfig(num_points=64))(out, [empty])
    assert float(losses["loss_mask"]) == 0.0 and float(losses["loss_dice"]) == 0.0
    expected_ce = F.cross_entropy(out["pred_logits"][0], torch.full((4,), K))  # all weights 0.1: cancels in the mean
    assert abs(float(losses["loss_ce"]) - float(expected_ce)) < 1e-6
    losses["loss"].backward()  # the masks take part in the graph (DDP needs every output used)
    assert out["pred_masks"].grad is not None


def test_uncertainty_sampling_prefers_uncertain_regions() -> None:
    # logit = 20 * (x - 0.5): uncertain (|logit| small) only in a vertical band around x = 0.5
    xs = (torch.arange(64) + 0.5) / 64
    logits = (20 * (xs - 0.5)).view(1, 1, 1, 64).expand(2, 1, 64, 64).contiguous()
    torch.manual_seed(0)
    coords = uncertain_point_coords(logits, num_points=1000, oversample=3.0, importance=0.75)
    assert coords.shape == (2, 1000, 2)
    assert float(coords.min()) >= 0.0 and float(coords.max()) <= 1.0
    near = (coords[..., 0] - 0.5).abs() < 0.15  # 30 % of the image
    # the 750 "important" points: the most uncertain quarter of 3000 random candidates, all within |x-0.5| < ~0.13
    assert float(near[:, :750].float().mean()) > 0.97
    # the remaining 250 are uniform (coverage of the rest of the image is kept)
    assert 0.2 < float(near[:, 750:].float().mean()) < 0.4
    uniform = uncertain_point_coords(logits, num_points=1000, oversample=3.0, importance=0.0)
    assert 0.25 < float(((uniform[..., 0] - 0.5).abs() < 0.15).float().mean()) < 0.35
    # a count that does not split evenly still returns exactly what was asked for
    assert uncertain_point_coords(logits, num_points=101, oversample=3.0, importance=0.75).shape == (2, 101, 2)


# -- targets -----------------------------------------------------------------------------------------------------------


def _panoptic_sample() -> Sample:
    """A 12x12 annotation: stuff class 0 split into two segments, two instances of thing 4, one crowd, some void."""
    pan = np.zeros((12, 12), np.int32)
    pan[:6] = 10  # stuff 0, part one
    pan[6:, :4] = 11  # stuff 0, part two (some formats split stuff into several segments)
    pan[6:, 4:8] = 12  # stuff 1
    pan[1:4, 1:4] = 20  # thing 4, instance A
    pan[1:4, 6:10] = 21  # thing 4, instance B
    pan[8:11, 9:11] = 30  # crowd of thing 5
    # pan[6:, 8:] outside the crowd stays 0 (void)
    segments = [
        SegmentInfo(10, 0, False),
        SegmentInfo(11, 0, False),
        SegmentInfo(12, 1, False),
        SegmentInfo(20, 4, True),
        SegmentInfo(21, 4, True),
        SegmentInfo(30, 5, True, iscrowd=True),
        SegmentInfo(40, 6, True),  # listed but not in the map (e.g. cropped away): no empty target
    ]
    sem = semantic_from_panoptic(pan, segments)
    return Sample(np.zeros((12, 12, 3), np.uint8), sem, pan, segments)


def test_panoptic_targets_one_per_instance_one_per_stuff_class() -> None:
    sample = _panoptic_sample()
    t = build_targets(sample, "panoptic", num_classes=K)
    assert t.labels.tolist() == [4, 4, 0, 1]  # thing instances in segment order, then stuff by class id
    pan = torch.from_numpy(sample.panoptic)
    assert torch.equal(t.masks[0], (pan == 20).float())
    assert torch.equal(t.masks[1], (pan == 21).float())
    assert torch.equal(t.masks[2], ((pan == 10) | (pan == 11)).float())  # the two stuff-0 segments merged
    assert torch.equal(t.masks[3], (pan == 12).float())
    assert t.masks.dtype == torch.float32 and t.labels.dtype == torch.int64
    # crowd and void pixels belong to no target
    covered = t.masks.sum(0)
    assert float(covered.max()) == 1.0
    assert torch.all(covered[(pan == 30) | (pan == 0)] == 0)


def test_semantic_targets_one_per_class_ignore_excluded() -> None:
    sample = _panoptic_sample()  # its semantic map has classes 0, 1, 4, 5 (crowd) and 255 (void)
    sem = sample.semantic.copy()
    sem[0, 0] = K + 3  # out-of-table value: never becomes a target
    sample = Sample(sample.image, sem, sample.panoptic, sample.segments)
    t = build_targets(sample, "semantic", num_classes=K)
    assert t.labels.tolist() == [0, 1, 4, 5]
    for label, mask in zip(t.labels.tolist(), t.masks, strict=True):
        assert torch.equal(mask, torch.from_numpy(sem == label).float())
    assert float(t.masks.sum()) == float((sem < K).sum())
    # all-ignore image: zero targets of the right shape; unknown task: error naming the choices
    void = Sample(sample.image, np.full((12, 12), IGNORE_LABEL, np.uint8))
    empty = build_targets(void, "semantic", num_classes=K)
    assert empty.labels.shape == (0,) and empty.masks.shape == (0, 12, 12)
    with pytest.raises(ValueError, match="semantic"):
        build_targets(sample, "instance", num_classes=K)


def test_panoptic_targets_need_a_panoptic_annotation() -> None:
    """A semantic-only sample would silently merge all instances of a class into one 'instance' target."""
    sample = _panoptic_sample()
    semantic_only = Sample(sample.image, sample.semantic, name="street_01")
    with pytest.raises(ValueError, match=r"'street_01' has no panoptic annotation.*data.task=semantic"):
        build_targets(semantic_only, "panoptic", num_classes=K)
    assert build_targets(semantic_only, "semantic", num_classes=K).labels.tolist() == [0, 1, 4, 5]


# -- augmentation ------------------------------------------------------------------------------------------------------

BLOCK = 10
PALETTE = np.random.default_rng(7).integers(20, 256, (64, 3), dtype=np.uint8)  # no black: 0 marks padding


def _block_sample() -> Sample:
    """4x6 grid of 10x10 rectangles, each its own segment (alternating thing/stuff), image colour = f(segment id).

    Rectangles make the image check exact: a bilinear pixel whose 3x3 neighbourhood of nearest-neighbour labels is
    uniform only reads source pixels of that one rectangle, so its colour must be the segment's colour.
    """
    grid = np.arange(1, 25, dtype=np.int32).reshape(4, 6)
    pan = np.kron(grid, np.ones((BLOCK, BLOCK), np.int32))
    segments = [SegmentInfo(int(i), int(i) % K, bool(i % 2)) for i in range(1, 25)]
    sem = semantic_from_panoptic(pan, segments)
    return Sample(PALETTE[pan], sem, pan, segments, name="blocks")


def _interior(labels: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood has a single label (border pixels excluded)."""
    core = labels[1:-1, 1:-1]
    same = np.ones_like(core, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            same &= labels[1 + dy : labels.shape[0] - 1 + dy, 1 + dx : labels.shape[1] - 1 + dx] == core
    out = np.zeros(labels.shape, bool)
    out[1:-1, 1:-1] = same
    return out


@pytest.mark.parametrize("crop", [(32, 48), (64, 40)])
def test_augmenter_keeps_image_semantic_and_panoptic_aligned(crop: tuple[int, int]) -> None:
    sample = _block_sample()
    aug = Augmenter(AugmentConfig(base_size=40, crop_size=crop, scale_range=(0.5, 2.0), photometric=False))
    dropped_somewhere = padded_somewhere = False
    for seed in range(8):
        out = aug(sample, np.random.default_rng(seed))
        assert out.size == crop and out.image.shape == (*crop, 3)
        assert out.semantic.dtype == sample.semantic.dtype and out.panoptic is not None
        # the relation semantic = f(panoptic) survives resize, crop, flip and padding (void <-> ignore)
        assert np.array_equal(out.semantic, semantic_from_panoptic(out.panoptic, sample.segments))
        # the image moved with the labels: interior pixels keep their segment's colour, padding is black
        inside = _interior(out.panoptic) & (out.panoptic > 0)
        assert inside.sum() > 0
        assert np.array_equal(out.image[inside], PALETTE[out.panoptic[inside]])
        void = out.panoptic == 0
        assert np.all(out.image[void] == 0) and np.all(out.semantic[void] == IGNORE_LABEL)
        padded_somewhere |= bool(void.any())
        # exactly the segments still visible are kept
        visible = set(np.unique(out.panoptic).tolist()) - {0}
        assert {s.id for s in out.segments} == visible
        dropped_somewhere |= len(out.segments) < len(sample.segments)
    assert dropped_somewhere  # the seeds exercised cropping segments away
    if crop == (64, 40):
        assert padded_somewhere  # a 0.5 scale (20x30) is smaller than this crop


def test_augmenter_is_deterministic_per_rng_state() -> None:
    sample = _block_sample()
    aug = Augmenter(AugmentConfig(base_size=40, crop_size=(32, 32)))
    a, b = aug(sample, np.random.default_rng(5)), aug(sample, np.random.default_rng(5))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.panoptic, b.panoptic)
    # ... and the draws come from that generator: it advances, and other seeds give other crops / flips / scales
    # (an augmenter that ignored its rng would pass the equality above).
    rng = np.random.default_rng(5)
    aug(sample, rng)
    assert rng.bit_generator.state != np.random.default_rng(5).bit_generator.state
    outputs = {aug(sample, np.random.default_rng(seed)).image.tobytes() for seed in range(8)}
    assert len(outputs) >= 4


def test_padding_uses_zero_ignore_and_void() -> None:
    sample = _block_sample()  # 40x60
    padded = pad_to(sample, (50, 64), ignore_label=254)
    assert padded.size == (50, 64)
    assert np.all(padded.image[40:] == 0) and np.all(padded.image[:, 60:] == 0)
    assert np.all(padded.semantic[40:] == 254) and np.all(padded.semantic[:, 60:] == 254)
    assert np.all(padded.panoptic[40:] == 0) and np.all(padded.panoptic[:, 60:] == 0)
    assert np.array_equal(padded.panoptic[:40, :60], sample.panoptic)
    # no resize (scale fixed at 0.5 of a 40-pixel short side -> 20x30), no flip: padding is bottom/right exactly
    aug = Augmenter(AugmentConfig(base_size=40, crop_size=(24, 36), scale_range=(0.5, 0.5), flip=False))
    out = aug(sample, np.random.default_rng(0))
    assert out.size == (24, 36)
    assert np.all(out.semantic[20:] == IGNORE_LABEL) and np.all(out.semantic[:, 30:] == IGNORE_LABEL)
    assert np.all(out.panoptic[20:] == 0) and np.all(out.panoptic[:, 30:] == 0)
    assert np.all(out.semantic[:20, :30] != IGNORE_LABEL)


def test_crop_drops_segments_that_leave_the_image() -> None:
    sample = _block_sample()
    out = crop_at(sample, 0, 0, BLOCK, 2 * BLOCK)  # exactly the first two rectangles
    assert [s.id for s in out.segments] == [1, 2]
    assert out.size == (BLOCK, 2 * BLOCK)
    # and the instance targets of the crop follow: only those two
    assert build_targets(out, "panoptic", num_classes=K).labels.numel() == 2


class _CountingRng:
    """A numpy Generator that counts the draws only hue (``integers``) and contrast/saturation (``uniform(0.5, 1.5)``)
    make, so the frequency of each photometric step can be measured."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.hue = self.scale = 0

    def random(self) -> float:
        return float(self.rng.random())

    def uniform(self, low: float, high: float) -> float:
        self.scale += (low, high) == (0.5, 1.5)
        return float(self.rng.uniform(low, high))

    def integers(self, low: int, high: int) -> int:
        self.hue += 1
        return int(self.rng.integers(low, high))


def test_photometric_steps_each_apply_with_probability_one_half() -> None:
    """mmseg's recipe: contrast, saturation and hue each with probability 0.5 (not 0.5 of a 0.75 branch)."""
    image = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    n, hue, scale = 4000, 0, 0
    for seed in range(n):
        rng = _CountingRng(seed)
        photometric_distortion(image, rng)  # type: ignore[arg-type]
        hue += rng.hue
        scale += rng.scale
    assert abs(hue / n - 0.5) < 0.04
    assert abs(scale / n - 1.0) < 0.06  # contrast 0.5 + saturation 0.5
