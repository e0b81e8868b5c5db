"""regtune.augment: each op against a NumPy transcription of its formula, the sampling of its
random choices, invariance to batching, threads and SIMD paths, and argument checks.

Statistical tests use fixed seeds; each states its significance level (a false alarm rate).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import regtune
from regtune import _core
from regtune import augment as A

from .conftest import SIMD_PATHS, num_threads, simd_path

RNG = np.random.default_rng(1234)
IMG_U8 = RNG.integers(0, 256, (6, 13, 17, 3), dtype=np.uint8)
IMG_F32 = RNG.random((6, 13, 17, 3), dtype=np.float32)
IDX = np.array([5, 900, 3, 77, 12, 4000], dtype=np.int64)
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _to_u8(v: np.ndarray) -> np.ndarray:
    """The pipeline's uint8 store: clamp to [0, 255] (NaN -> 0), round half to even."""
    return np.rint(np.clip(np.nan_to_num(v, nan=0.0), 0, 255)).astype(np.uint8)


def _store(v: np.ndarray, dtype) -> np.ndarray:
    return _to_u8(v) if dtype == np.uint8 else v.astype(np.float32)


# ----------------------------------------------------------------------------- references


def _ref_crop(img, top, left, size, padding, mode, fill):
    l, t, r, b = padding
    h, w = size
    if mode == "constant":
        p = np.pad(img, ((t, b), (l, r), (0, 0)), mode="constant", constant_values=fill)
    else:
        p = np.pad(img, ((t, b), (l, r), (0, 0)), mode=mode)
    return p[top:top + h, left:left + w]


def _torch_weights(start, length, out):
    """torch's upsample_bilinear2d (align_corners=False) source taps for one axis, float64."""
    i0, i1, l1 = [], [], []
    scale = length / out
    for o in range(out):
        src = max((o + 0.5) * scale - 0.5, 0.0)
        a = int(math.floor(src))
        a = min(a, length - 1)
        i0.append(start + a)
        i1.append(start + min(a + 1, length - 1))
        l1.append(src - a)
    return np.array(i0), np.array(i1), np.array(l1)


def _torch_aa_taps(start, length, out):
    """torch's ``_compute_weights_aa`` (aten/src/ATen/native/cpu/UpSampleKernel.cpp) for bilinear,
    ``align_corners=False``, transcribed loop by loop in float64: per output coordinate, its taps
    (input coordinates) and normalized weights."""
    scale = length / out
    support = scale if scale >= 1.0 else 1.0  # interp_size / 2 * scale, interp_size = 2
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    max_size = int(math.ceil(support)) * 2 + 1
    taps = []
    for o in range(out):
        center = scale * (o + 0.5)
        xmin = max(int(center - support + 0.5), 0)
        xsize = min(max(min(int(center + support + 0.5), length) - xmin, 0), max_size)
        w = [max(0.0, 1.0 - abs((j + xmin - center + 0.5) * invscale)) for j in range(xsize)]
        total = sum(w)
        taps.append(([start + xmin + j for j in range(xsize)], [x / total if total else x for x in w]))
    return taps


def _resample_axis(src, axis, taps):
    """The documented pairwise sum along ``axis`` in float32: taps in pairs (a coordinate's short
    list padded with weight 0 on its last tap to the axis' widest pair count), each pair
    ``w0 * a + w1 * b``, the pairs added in order."""
    pairs = max((len(j) + 1) // 2 for j, _ in taps)
    src = np.moveaxis(src, axis, 0)
    out = []
    for idx, wts in taps:
        idx = idx + [idx[-1]] * (2 * pairs - len(idx))
        wts = [np.float32(x) for x in wts] + [np.float32(0)] * (2 * pairs - len(wts))
        acc = None
        for p in range(pairs):
            pair = wts[2 * p] * src[idx[2 * p]] + wts[2 * p + 1] * src[idx[2 * p + 1]]
            acc = pair if acc is None else acc + pair
        out.append(acc)
    return np.moveaxis(np.stack(out), 0, axis)


def _ref_bilinear(img, top, left, h, w, size, antialias=False):
    """The documented formula, in float32 in the documented order (horizontal, then vertical):
    2-tap bilinear, or (antialias) torch's antialiased taps summed in pairs."""
    src = img.astype(np.float32)
    if antialias:
        hor = _resample_axis(src, 1, _torch_aa_taps(left, w, size[1]))
        return _resample_axis(hor, 0, _torch_aa_taps(top, h, size[0]))
    ry0, ry1, ly = _torch_weights(top, h, size[0])
    rx0, rx1, lx = _torch_weights(left, w, size[1])
    wx1, wx0 = lx.astype(np.float32), (1.0 - lx).astype(np.float32)
    wy1, wy0 = ly.astype(np.float32), (1.0 - ly).astype(np.float32)
    hor = wx0[None, :, None] * src[:, rx0] + wx1[None, :, None] * src[:, rx1]  # every source row
    return wy0[:, None, None] * hor[ry0] + wy1[:, None, None] * hor[ry1]


def _ref_normalize(v, u8):
    mpv = 255.0 if u8 else 1.0
    a = (1.0 / (mpv * np.array(STD))).astype(np.float32)
    b = (-np.array(MEAN) / np.array(STD)).astype(np.float32)
    return v.astype(np.float32) * a + b


# ----------------------------------------------------------------------------- geometric ops


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "symmetric"])
@pytest.mark.parametrize("images", [IMG_U8, IMG_F32], ids=["uint8", "float32"])
def test_random_crop_and_flips_match_numpy(mode, images):
    ops = [A.RandomCrop((11, 15), padding=(3, 2, 4, 1), padding_mode=mode, fill=7), A.HorizontalFlip(0.5),
           A.VerticalFlip(0.5)]  # fmt: skip
    pipe = A.Pipeline(ops, seed=3)
    got = pipe(images, indices=IDX, epoch=2)
    prm = pipe.sample_params(images.shape, indices=IDX, epoch=2)
    assert got.dtype == images.dtype
    for i, img in enumerate(images):
        ref = _ref_crop(img, prm[0]["top"][i], prm[0]["left"][i], (11, 15), (3, 2, 4, 1), mode, 7)
        if prm[1]["flip"][i]:
            ref = ref[:, ::-1]
        if prm[2]["flip"][i]:
            ref = ref[::-1]
        np.testing.assert_array_equal(got[i], ref)


def test_random_translate_matches_numpy():
    pipe = A.Pipeline([A.RandomTranslate(3)], seed=1)
    got = pipe(IMG_U8, indices=IDX)
    prm = pipe.sample_params(IMG_U8.shape, indices=IDX)[0]
    for i, img in enumerate(IMG_U8):
        p = np.pad(img, ((3, 3), (3, 3), (0, 0)))
        dy, dx = prm["dy"][i], prm["dx"][i]
        np.testing.assert_array_equal(got[i], p[3 + dy:3 + dy + 13, 3 + dx:3 + dx + 17])


@pytest.mark.parametrize("images", [IMG_U8, IMG_F32, RNG.integers(0, 256, (4, 9, 11, 1), dtype=np.uint8),
                                    RNG.random((4, 9, 11, 4), dtype=np.float32),
                                    RNG.integers(0, 256, (4, 9, 11, 4), dtype=np.uint8)],
                         ids=["uint8", "float32", "uint8-1ch", "float32-4ch", "uint8-4ch"])  # fmt: skip
@pytest.mark.parametrize("size", [(7, 9), (24, 30), (3, 2)], ids=["shrink", "grow", "shrink-5x"])
@pytest.mark.parametrize("antialias", [True, False], ids=["antialias", "plain"])
def test_random_resized_crop_matches_formula(images, size, antialias):
    pipe = A.Pipeline([A.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=antialias)], seed=5)
    idx = IDX[:len(images)]
    got = pipe(images, indices=idx)
    prm = pipe.sample_params(images.shape, indices=idx)[0]
    for i, img in enumerate(images):
        ref = _ref_bilinear(img, prm["top"][i], prm["left"][i], prm["height"][i], prm["width"][i], size, antialias)
        np.testing.assert_array_equal(got[i], _store(ref, images.dtype))


def test_bilinear_within_one_of_torch_interpolate():
    torch = pytest.importorskip("torch")
    img = RNG.integers(0, 256, (1, 40, 50, 3), dtype=np.uint8)
    pipe = A.Pipeline([A.RandomResizedCrop((16, 21), antialias=False)], seed=0)
    got = pipe(np.repeat(img, 8, axis=0), indices=np.arange(8))
    prm = pipe.sample_params((8, 40, 50, 3), indices=np.arange(8))[0]
    for i in range(8):
        t, l, h, w = (int(prm[k][i]) for k in ("top", "left", "height", "width"))
        box = torch.from_numpy(img[0, t:t + h, l:l + w].astype(np.float64)).permute(2, 0, 1)[None]
        ref = torch.nn.functional.interpolate(box, size=(16, 21), mode="bilinear", align_corners=False,
                                              antialias=False)[0].permute(1, 2, 0).numpy()  # fmt: skip
        assert np.abs(got[i].astype(np.int64) - np.rint(ref)).max() <= 1


@pytest.mark.parametrize("antialias", [True, False], ids=["antialias", "plain"])
def test_padded_crop_after_a_resize_reads_the_fill(antialias):
    """An integer map with fill coordinates after a resampling map: the resized values exactly,
    and the fill value where the crop pads. A fill column is exact (pair 0 with weights 1, 0, the
    other pairs 0); a fill row goes through the columns' blend (w0 * fill + w1 * fill, summed over
    the pairs), as a padded row before a resize does, so it is the fill value within a few
    float32 roundings."""
    ops = [A.RandomResizedCrop((9, 8), scale=(0.3, 1.0), antialias=antialias),
           A.RandomCrop((9, 8), padding=3, fill=7), A.HorizontalFlip()]  # fmt: skip
    pipe = A.Pipeline(ops, seed=13)
    got = pipe(IMG_F32, indices=IDX)
    prm = pipe.sample_params(IMG_F32.shape, indices=IDX)
    for i, img in enumerate(IMG_F32):
        r = prm[0]
        ref = _ref_bilinear(img, r["top"][i], r["left"][i], r["height"][i], r["width"][i], (9, 8), antialias)
        ref = _ref_crop(ref, prm[1]["top"][i], prm[1]["left"][i], (9, 8), (3, 3, 3, 3), "constant", 7)
        ref = ref[:, ::-1] if prm[2]["flip"][i] else ref
        inside = ref != 7  # (the random values are in [0, 1))
        np.testing.assert_array_equal(got[i][inside], ref[inside].astype(np.float32))
        np.testing.assert_allclose(got[i][~inside], 7.0, rtol=1e-6)
    assert (pipe(IMG_U8, indices=IDX) == 7).any()  # on uint8 the fill is exact after the rounding


def _torch_resize(box, size, dtype):
    """torch.nn.functional.interpolate(bilinear, align_corners=False, antialias=True) of an HWC
    box: on the uint8 tensor itself (torch's integer path, which torchvision's resize calls on
    uint8 tensors), or in float64."""
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(np.ascontiguousarray(box)).permute(2, 0, 1)[None]
    t = t if dtype == np.uint8 else t.double()
    return torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False,
                                           antialias=True)[0].permute(1, 2, 0).numpy()  # fmt: skip


def test_antialiased_resized_crop_within_one_of_torch_interpolate():
    """RandomResizedCrop(antialias=True) against torch's antialiased interpolate of the same box:
    within 1 (of 255) on uint8 (torch rounds its integer weights and its intermediate rows), within
    float32 rounding in float64 on float32 images; boxes shrunk by up to about 6x and grown."""
    img = RNG.integers(0, 256, (1, 120, 150, 3), dtype=np.uint8)
    for size in [(20, 24), (64, 80), (160, 190)]:
        pipe = A.Pipeline([A.RandomResizedCrop(size, scale=(0.05, 1.0))], seed=3)
        n = 10
        batch = np.repeat(img, n, axis=0)
        got8, got32 = pipe(batch, indices=np.arange(n)), pipe(batch.astype(np.float32) / 255, indices=np.arange(n))
        prm = pipe.sample_params(batch.shape, indices=np.arange(n))[0]
        for i in range(n):
            t, l, h, w = (int(prm[k][i]) for k in ("top", "left", "height", "width"))
            box = img[0, t:t + h, l:l + w]
            assert np.abs(got8[i].astype(np.int64) - _torch_resize(box, size, np.uint8)).max() <= 1
            np.testing.assert_allclose(got32[i], _torch_resize(box.astype(np.float64) / 255, size, np.float64),
                                       rtol=0, atol=2e-6)  # fmt: skip


def _tv_resized_hw(h, w, size, max_size=None):
    """torchvision's transforms.v2.functional._geometry._compute_resized_output_size for [size]."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if w <= h else (new_short, new_long)


@pytest.mark.parametrize("hw,size,max_size", [((120, 150), 64, None), ((150, 120), 64, None), ((99, 37), 20, None),
                                              ((120, 150), 64, 70), ((40, 40), 56, None), ((13, 200), 7, 30)])
def test_resize_shorter_side_is_torchvisions(hw, size, max_size):
    """Resize(int): the output size of torchvision's rule; the values within 1 of torch's
    antialiased interpolate on uint8 (and equal to the pairwise formula)."""
    img = RNG.integers(0, 256, (2,) + hw + (3,), dtype=np.uint8)
    pipe = A.Pipeline([A.Resize(size, max_size=max_size)], seed=0)
    oh, ow = _tv_resized_hw(*hw, size, max_size)
    got = pipe(img)
    assert got.shape == (2, oh, ow, 3) == pipe.output_shape(img.shape)
    for i in range(2):
        assert np.abs(got[i].astype(np.int64) - _torch_resize(img[i], (oh, ow), np.uint8)).max() <= 1
        np.testing.assert_array_equal(got[i], _store(_ref_bilinear(img[i], 0, 0, hw[0], hw[1], (oh, ow), True), np.uint8))
    plain = A.Pipeline([A.Resize((oh, ow), antialias=False)], seed=0)(img)
    for i in range(2):
        np.testing.assert_array_equal(plain[i], _store(_ref_bilinear(img[i], 0, 0, hw[0], hw[1], (oh, ow)), np.uint8))


@pytest.mark.parametrize("hw,size", [((13, 17), (5, 6)), ((13, 17), (4, 7)), ((13, 17), (13, 17)), ((6, 5), (9, 8)),
                                     ((1, 1), (2, 3))])
@pytest.mark.parametrize("images", [IMG_U8, IMG_F32], ids=["uint8", "float32"])
def test_center_crop_is_torchvisions(hw, size, images):
    """torchvision's center_crop, transcribed: pad (size - H) // 2 above and the rest below with 0
    when the window is larger, then crop at int(round((H - h) / 2)) (half to even)."""
    imgs = images[:, :hw[0], :hw[1]]
    got = A.Pipeline([A.CenterCrop(size)], seed=0)(imgs)
    h, w = size
    H, W = hw
    pt, pl = max(h - H, 0), max(w - W, 0)
    ref = np.pad(imgs, ((0, 0), (pt // 2, (pt + 1) // 2), (pl // 2, (pl + 1) // 2), (0, 0)))
    Hp, Wp = ref.shape[1:3]
    top, left = int(round((Hp - h) / 2.0)), int(round((Wp - w) / 2.0))
    np.testing.assert_array_equal(got, ref[:, top:top + h, left:left + w])


def test_eval_transform_is_resize_center_crop_normalize():
    """[Resize(S), CenterCrop(s), Normalize] (the recipes' evaluation transform) equals its parts:
    the resize's pairwise formula, cropped, then Normalize's float32 affine map."""
    imgs = RNG.integers(0, 256, (3, 40, 31, 3), dtype=np.uint8)
    pipe = A.Pipeline([A.Resize(20), A.CenterCrop(16), A.Normalize(MEAN, STD)], seed=0, layout="NCHW")
    got = pipe(imgs)
    oh, ow = _tv_resized_hw(40, 31, 20)
    top, left = int(round((oh - 16) / 2.0)), int(round((ow - 16) / 2.0))
    for i in range(3):
        r = _ref_bilinear(imgs[i], 0, 0, 40, 31, (oh, ow), True)[top:top + 16, left:left + 16]
        np.testing.assert_array_equal(got[i], _ref_normalize(r, True).transpose(2, 0, 1))


def test_core_checks_tap_pair_counts():
    x = np.zeros((1, 4, 4, 1), np.uint8)
    out = np.zeros((1, 2, 2, 1), np.uint8)
    i = np.zeros((1, 4), np.int32)  # 2 pairs x 2 coordinates
    w = np.zeros((1, 4), np.float32)
    fill = np.zeros(1, np.float32)
    idx = np.zeros(1, np.uint64)

    def run(rp, cp):
        _core.augment_run(x, out, False, True, i, i, w, w, i, i, w, w, fill, [], 0, 0, idx, rp, cp)

    run(np.array([2], np.int32), np.array([1], np.int32))
    with pytest.raises(ValueError, match=r"row_pairs holds 3, outside \[1, 2\]"):
        run(np.array([3], np.int32), np.array([1], np.int32))
    with pytest.raises(ValueError, match=r"col_pairs holds 0"):
        run(np.array([1], np.int32), np.array([0], np.int32))
    with pytest.raises(ValueError, match=r"col_pairs must have shape \(1,\)"):
        run(np.array([1], np.int32), np.array([1, 1], np.int32))
    with pytest.raises(TypeError, match="row_pairs must have dtype int32"):
        run(np.array([1], np.int64), np.array([1], np.int32))
    i64 = np.array([0, 3], np.int64)
    with pytest.raises(ValueError, match="start and length must be 1-D of one length"):
        _core.augment_taps(i64, np.array([5], np.int64), 4, True)
    with pytest.raises(ValueError, match="0 <= start"):
        _core.augment_taps(np.array([-1], np.int64), np.array([5], np.int64), 4, True)
    with pytest.raises(ValueError, match="out must be in"):
        _core.augment_taps(i64, i64, 0, False)
    with pytest.raises(TypeError, match="start must have dtype int64"):
        _core.augment_taps(i64.astype(np.int32), i64, 4, False)
    ti0, ti1, tw0, tw1, pairs = _core.augment_taps(np.array([2, 0], np.int64), np.array([9, 0], np.int64), 3, True)
    assert ti0.shape == (2, 3, 3) and pairs.tolist() == [3, 1]  # 9 -> 3: 6 taps at most; an empty box: one pair
    np.testing.assert_allclose(tw0[0, :, 0], [0.25, 0.25, 0.0])  # taps 2..6 of box [2, 11): 2/3, 1, 2/3, 1/3, 0
    np.testing.assert_allclose(tw1[0, :, 0], [0.375, 0.125, 0.0])  # divided by their sum 8/3
    assert (ti0[1] == -1).all() and np.allclose((tw0 + tw1)[0].sum(axis=0), 1.0)


def test_crop_then_resized_crop_then_flip_compose():
    """Integer maps before and after the resampling compose into one pass."""
    for antialias in (True, False):
        ops = [A.RandomCrop(12, padding=2, padding_mode="reflect"), A.RandomResizedCrop((9, 10), antialias=antialias),
               A.HorizontalFlip(1.0), A.VerticalFlip(1.0)]  # fmt: skip
        pipe = A.Pipeline(ops, seed=8)
        got = pipe(IMG_F32, indices=IDX)
        prm = pipe.sample_params(IMG_F32.shape, indices=IDX)
        for i, img in enumerate(IMG_F32):
            c = _ref_crop(img, prm[0]["top"][i], prm[0]["left"][i], (12, 12), (2, 2, 2, 2), "reflect", 0)
            r = prm[1]
            ref = _ref_bilinear(c, r["top"][i], r["left"][i], r["height"][i], r["width"][i], (9, 10), antialias)
            np.testing.assert_array_equal(got[i], ref[::-1, ::-1].astype(np.float32))


def _torchvision_rrc(words, H, W, scale, ratio):
    """torchvision's RandomResizedCrop.get_params, transcribed, drawing from the given words."""
    area = H * W
    lr = (math.log(ratio[0]), math.log(ratio[1]))
    for t in range(10):
        u = words[4 * t:4 * t + 4].astype(np.float64) / 2**32
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(lr[0] + (lr[1] - lr[0]) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= W and 0 < h <= H:
            return (int(words[4 * t + 2]) * (H - h + 1)) >> 32, (int(words[4 * t + 3]) * (W - w + 1)) >> 32, h, w
    in_ratio = W / H
    if in_ratio < min(ratio):
        w, h = W, int(round(W / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = H, int(round(H * max(ratio)))
    else:
        w, h = W, H
    return (H - h) // 2, (W - w) // 2, h, w


@pytest.mark.parametrize("hw,scale,ratio", [((375, 500), (0.08, 1.0), (3 / 4, 4 / 3)),
                                            ((20, 200), (0.5, 1.0), (1.0, 1.0))])  # fmt: skip
def test_resized_crop_box_is_torchvisions_sampling(hw, scale, ratio):
    n = 400
    pipe = A.Pipeline([A.RandomResizedCrop(8, scale=scale, ratio=ratio)], seed=11)
    prm = pipe.sample_params((n, *hw, 3), indices=np.arange(n), epoch=4)[0]
    words = _core.augment_words(pipe.key, 4, np.arange(n, dtype=np.uint64), 0, 40)
    for i in range(n):
        assert _torchvision_rrc(words[i], *hw, scale, ratio) == tuple(int(prm[k][i]) for k in ("top", "left", "height", "width"))


# ----------------------------------------------------------------------------- pointwise ops


@pytest.mark.parametrize("images", [IMG_U8, IMG_F32], ids=["uint8", "float32"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_normalize_and_layout(images, layout):
    pipe = A.Pipeline([A.Normalize(MEAN, STD)], seed=0, layout=layout)
    got = pipe(images)
    ref = _ref_normalize(images, images.dtype == np.uint8)
    if layout == "NCHW":
        ref = ref.transpose(0, 3, 1, 2)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)


def _tv_adjust_hue(img, hue_factor, bound=1.0):
    """torchvision's adjust_hue_image on float tensors (transforms/v2/functional/_color.py:
    _rgb_to_hsv, ``h.add_(hue_factor).remainder_(1.0)``, _hsv_to_rgb), re-stated in NumPy float32
    operation by operation on an (H, W, 3) array; ``bound`` replaces the clamps' 1.0 (regtune
    works at the pixel scale: 255 for uint8)."""
    f32 = np.float32
    img = img.astype(f32)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    maxc, minc = img.max(axis=-1), img.min(axis=-1)
    eqc = maxc == minc
    channels_range = maxc - minc
    ones = np.ones_like(maxc)
    s = channels_range / np.where(eqc, ones, maxc)
    divisor = np.where(eqc, ones, channels_range)[..., None]
    rgbc = (maxc[..., None] - img) / divisor
    rc, gc, bc = rgbc[..., 0], rgbc[..., 1], rgbc[..., 2]
    neq_r, eq_g = maxc != r, maxc == g
    hg = ((rc + f32(2.0)) - bc) * (eq_g & neq_r).astype(f32)
    hr = (bc - gc) * (~neq_r).astype(f32)
    hb = ((gc + f32(4.0)) - rc) * (neq_r & ~eq_g).astype(f32)
    h = (hr + hg) + hb
    h = np.fmod(h * f32(1.0 / 6.0) + f32(1.0), f32(1.0))
    h = h + f32(hue_factor)
    h = np.fmod(h, f32(1.0))  # torch's remainder: fmod, + 1 where negative
    h = np.where((h != 0) & (h < 0), h + f32(1.0), h)
    v = maxc
    h6 = h * f32(6)
    i = np.floor(h6)
    fr = h6 - i
    i = i.astype(np.int32) % 6
    sxv = s * v
    p = np.clip(v - sxv, f32(0), f32(bound))
    sxv = sxv * fr
    q = np.clip(v - sxv, f32(0), f32(bound))
    t = np.clip(sxv + p, f32(0), f32(bound))
    a1 = np.stack((v, q, p, p, t, v))
    a2 = np.stack((t, v, v, q, p, p))
    a3 = np.stack((p, p, t, v, v, q))
    pick = (lambda a: np.take_along_axis(a, i[None], axis=0)[0])
    return np.stack([pick(a1), pick(a2), pick(a3)], axis=-1)


def _ref_jitter(v, b, c, s, h, order, bound):
    v = v.astype(np.float32)
    for part in order:
        if part == 3:
            if h != 0:
                v = _tv_adjust_hue(v, h, bound)
            continue
        f = np.float32((b, c, s)[part])
        if f == 1:
            continue
        if part == 0:
            v = np.clip(v * f, 0, bound)
        elif part == 1:
            gray = (np.float32(0.2989) * v[..., 0] + np.float32(0.587) * v[..., 1]) + np.float32(0.114) * v[..., 2]
            mean = np.float32(gray.astype(np.float64).sum() / gray.size)
            v = np.clip(v * f + mean * (np.float32(1) - f), 0, bound)
        else:
            gray = (np.float32(0.2989) * v[..., 0] + np.float32(0.587) * v[..., 1]) + np.float32(0.114) * v[..., 2]
            v = np.clip(v * f + (gray * (np.float32(1) - f))[..., None], 0, bound)
    return v


@pytest.mark.parametrize("hue", [0.0, 0.3], ids=["no-hue", "hue"])
@pytest.mark.parametrize("images", [IMG_U8, IMG_F32], ids=["uint8", "float32"])
def test_color_jitter_matches_numpy(images, hue):
    pipe = A.Pipeline([A.ColorJitter(0.4, 0.4, 0.4, hue)], seed=2)
    got = pipe(images, indices=IDX)
    prm = pipe.sample_params(images.shape, indices=IDX)[0]
    bound = 255.0 if images.dtype == np.uint8 else 1.0
    assert len({tuple(o) for o in prm["order"].tolist()}) > 1
    assert (prm["order"][:, 3] == 3).all() if hue == 0 else (prm["order"][:, 3] != 3).any()
    for i, img in enumerate(images):
        ref = _ref_jitter(img, prm["brightness"][i], prm["contrast"][i], prm["saturation"][i], prm["hue"][i],
                          prm["order"][i], bound)  # fmt: skip
        if images.dtype == np.uint8:
            assert np.abs(got[i].astype(int) - _to_u8(ref).astype(int)).max() <= 1  # the contrast mean's last bit
        else:
            np.testing.assert_allclose(got[i], ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("clip", [True, False])
def test_gaussian_noise_is_the_documented_stream(clip):
    pipe = A.Pipeline([A.HorizontalFlip(0.0), A.GaussianNoise(0.2, clip=clip)], seed=4, layout="NCHW")
    got = pipe(IMG_F32, indices=IDX, epoch=3)
    for i, img in enumerate(IMG_F32):
        noise = np.empty(img.size, np.float32)
        _core.normal(noise, pipe.key, (3 << 32) | int(IDX[i]), 1 << 34, 0.0, 0.2)
        ref = img + noise.reshape(img.shape)
        if clip:
            ref = np.clip(ref, 0, 1)
        np.testing.assert_array_equal(got[i], ref.transpose(2, 0, 1))


@pytest.mark.parametrize("after_normalize", [False, True])
def test_random_erasing_matches_numpy(after_normalize):
    er = A.RandomErasing(p=0.7, value=(1, 2, 3))
    ops = [A.Normalize(MEAN, STD), er] if after_normalize else [er, A.Normalize(MEAN, STD)]
    pipe = A.Pipeline(ops, seed=6)
    n = 40
    imgs = np.repeat(IMG_U8[:1], n, axis=0)
    got = pipe(imgs, indices=np.arange(n))
    prm = pipe.sample_params(imgs.shape, indices=np.arange(n))[1 if after_normalize else 0]
    assert 0 < (prm["height"] > 0).sum() < n
    for i in range(n):
        t, l, h, w = (int(prm[k][i]) for k in ("top", "left", "height", "width"))
        if after_normalize:
            ref = _ref_normalize(imgs[i], True)
            ref[t:t + h, l:l + w] = (1, 2, 3)
        else:
            v = imgs[i].astype(np.float32)
            v[t:t + h, l:l + w] = (1, 2, 3)
            ref = _ref_normalize(v, True)
        np.testing.assert_array_equal(got[i], ref)
        if h:
            assert h < 13 and w < 17 and 0.02 * 13 * 17 * 0.5 <= h * w <= 0.33 * 13 * 17 * 1.5


def _ref_random_box(key, position, index, epoch, c, h, w):
    """RandomErasing(value="random")'s documented values for one box, (C, h, w): normal elements
    (position << 34) + (c * h + y) * w + x of the stream (key, epoch << 32 | index), N(0, 1)."""
    v = np.empty(c * h * w, np.float32)
    _core.normal(v, key, (epoch << 32) | int(index), position << 34, 0.0, 1.0)
    return v.reshape(c, h, w)


TALL_F32 = RNG.random((12, 64, 40, 3), dtype=np.float32)  # 34 rows per block (4096 floats): boxes straddle blocks


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("where", ["alone", "before_normalize", "after_normalize"])
def test_random_erasing_random_is_the_documented_stream(where, layout):
    er = A.RandomErasing(p=0.8, scale=(0.1, 0.4), value="random")
    ops = {"alone": [A.HorizontalFlip(0.0), er], "before_normalize": [er, A.Normalize(MEAN, STD)],
           "after_normalize": [A.Normalize(MEAN, STD), er]}[where]  # fmt: skip
    position = ops.index(er)
    pipe = A.Pipeline(ops, seed=13, layout=layout)
    idx = np.arange(100, 112)
    got = pipe(TALL_F32, indices=idx, epoch=7)
    prm = pipe.sample_params(TALL_F32.shape, indices=idx, epoch=7)[position]
    block = 4096 // (40 * 3)
    assert ((prm["top"] < block) & (prm["top"] + prm["height"] > block)).any()  # a box cut by the row blocks
    assert 0 < (prm["height"] > 0).sum() < 12
    for i, img in enumerate(TALL_F32):
        t, l, h, w = (int(prm[k][i]) for k in ("top", "left", "height", "width"))
        box = _ref_random_box(pipe.key, position, idx[i], 7, 3, h, w).transpose(1, 2, 0)
        if where == "after_normalize":
            ref = _ref_normalize(img, False)
            ref[t:t + h, l:l + w] = box
        else:
            ref = img.copy()
            ref[t:t + h, l:l + w] = box
            if where == "before_normalize":
                ref = _ref_normalize(ref, False)
        np.testing.assert_array_equal(got[i], ref if layout == "NHWC" else ref.transpose(2, 0, 1))


def test_random_erasing_random_on_uint8_is_rounded_and_clamped():
    """Without Normalize a uint8 pipeline stores uint8: the N(0, 1) draws are clamped to [0, 255]
    and rounded half to even like every value, so about Phi(0.5) = 69% of them become 0. The share
    of zeros is within 5 binomial standard errors (level ~6e-7)."""
    imgs = np.repeat(IMG_U8[:1], 60, axis=0)
    pipe = A.Pipeline([A.RandomErasing(p=1.0, scale=(0.2, 0.3), value="random")], seed=14)
    got = pipe(imgs, indices=np.arange(60))
    prm = pipe.sample_params(imgs.shape, indices=np.arange(60))[0]
    drawn = []
    for i in range(60):
        t, l, h, w = (int(prm[k][i]) for k in ("top", "left", "height", "width"))
        box = _ref_random_box(pipe.key, 0, i, 0, 3, h, w).transpose(1, 2, 0)
        ref = imgs[i].copy()
        ref[t:t + h, l:l + w] = _to_u8(box)
        np.testing.assert_array_equal(got[i], ref)
        drawn.append(got[i, t:t + h, l:l + w].ravel())
    drawn = np.concatenate(drawn)
    p0 = 0.5 * (1 + math.erf(0.5 / math.sqrt(2)))
    assert abs((drawn == 0).mean() - p0) < 5 * math.sqrt(p0 * (1 - p0) / drawn.size)
    assert drawn.max() <= 6


def test_random_erasing_random_values_are_standard_normal():
    """The erased values of 300 boxes: mean and variance within 4.5 standard errors of N(0, 1)'s
    (level ~7e-6 each), and a Kolmogorov-Smirnov test against N(0, 1) at level 0.001."""
    imgs = np.full((300, 32, 32, 3), 0.5, np.float32)
    pipe = A.Pipeline([A.RandomErasing(p=1.0, scale=(0.1, 0.3), value="random")], seed=15)
    got = pipe(imgs, indices=np.arange(300), epoch=1)
    prm = pipe.sample_params(imgs.shape, indices=np.arange(300), epoch=1)[0]
    inside = np.zeros(got.shape, bool)
    for i in range(300):
        t, l, h, w = (int(prm[k][i]) for k in ("top", "left", "height", "width"))
        inside[i, t:t + h, l:l + w] = True
    assert (got[~inside] == 0.5).all()  # the pixels outside the boxes are untouched
    v = got[inside].astype(np.float64)
    n = v.size
    assert n > 50_000
    assert abs(v.mean()) < 4.5 * math.sqrt(1 / n)
    assert abs(v.var() - 1) < 4.5 * math.sqrt(2 / n)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert scipy_stats.kstest(v, "norm").pvalue > 1e-3


# ----------------------------------------------------------------------------- distributions


def test_crop_offsets_uniform_chi_square():
    """Chi-square goodness of fit of the 9 x 9 offsets of RandomCrop(32, padding=4); level 0.001."""
    scipy_stats = pytest.importorskip("scipy.stats")
    n = 20000
    pipe = A.Pipeline([A.RandomCrop(32, padding=4)], seed=7)
    prm = pipe.sample_params((n, 32, 32, 3), indices=np.arange(n))[0]
    counts = np.bincount(prm["top"] * 9 + prm["left"], minlength=81)
    assert counts.size == 81
    assert scipy_stats.chisquare(counts).pvalue > 1e-3


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_flip_frequency(p):
    """Binomial count of flips within 4.5 standard errors (level ~7e-6)."""
    n = 20000
    prm = A.Pipeline([A.HorizontalFlip(p)], seed=9).sample_params((n, 4, 4, 1), indices=np.arange(n), epoch=1)[0]
    k = int(prm["flip"].sum())
    if p in (0.0, 1.0):
        assert k == n * p
    else:
        assert abs(k - n * p) < 4.5 * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.5])
def test_mixup_lambda_is_beta(alpha):
    """Kolmogorov-Smirnov test of the per-sample lambdas against Beta(alpha, alpha); level 0.001."""
    scipy_stats = pytest.importorskip("scipy.stats")
    lam = A.MixUp(alpha, num_classes=3, seed=5).lambdas(5000, indices=np.arange(5000), epoch=2)
    assert ((lam >= 0) & (lam <= 1)).all()
    assert scipy_stats.kstest(lam, scipy_stats.beta(alpha, alpha).cdf).pvalue > 1e-3


# Known answers of the Beta draws at ordinary alphas (seed 7, epoch 5, these indices), recorded
# before issue 27's change of the small-alpha arithmetic and unchanged by it. Float64 values
# from NumPy's log/cos/sqrt, so compared to 1e-12 (NumPy's SIMD paths may differ in an ulp).
MIX_KNOWN_INDICES = np.array([1, 4, 7, 1000, 2**32 - 1, 5])
MIX_KNOWN = {
    0.05: ["0x1.fc2792d02e2b2p-1", "0x1.fffffff63d439p-1", "0x1.8ba94168dccecp-11", "0x1.fffff97bad020p-1", "0x1.f0b76bc8710bcp-1", "0x1.fb50f376a0428p-43"],
    0.2: ["0x1.58962a5e8566ap-1", "0x1.fe3a2a6184e8dp-1", "0x1.729f80da6029fp-3", "0x1.fac690937c57ep-1", "0x1.1cb042c7e228dp-1", "0x1.3229e83260bb4p-11"],
    0.4: ["0x1.0ab8848f690c5p-1", "0x1.ea53a0c88031cp-1", "0x1.6bf5691882641p-2", "0x1.dec6af615b452p-1", "0x1.c42e305979590p-2", "0x1.63052cf690446p-6"],
    1.0: ["0x1.4146a004c1a1bp-2", "0x1.6104d4f2997a3p-1", "0x1.38ad116705e3cp-1", "0x1.858434cfcd279p-1", "0x1.0ab5ed1a463adp-2", "0x1.bb44003a6d539p-2"],
    2.5: ["0x1.91a69658ae738p-2", "0x1.9a499a3d469e9p-1", "0x1.2020300af222fp-1", "0x1.48e5400d65985p-1", "0x1.79e44b85f22e3p-2", "0x1.ddd3a49a3c8f4p-2"],
    10.0: ["0x1.cabfaa7b40283p-2", "0x1.4d4cb03786365p-1", "0x1.0f61a142103e0p-1", "0x1.21772b579d290p-1", "0x1.12dbfc9f13163p-1", "0x1.f0de87ee55de7p-2"],
    1000.0: ["0x1.fab60531d19a1p-2", "0x1.078e337110914p-1", "0x1.01860a04bf3b4p-1", "0x1.032e349b2056fp-1", "0x1.01b1566028003p-1", "0x1.fe9649be90054p-2"],
}
CUTMIX_KNOWN_BOXES = [[10, 20, 18, 24], [25, 32, 1, 11], [0, 30, 5, 24], [1, 25, 13, 24], [0, 17, 0, 9], [18, 32, 1, 17], [11, 32, 12, 24], [8, 30, 13, 24]]


@pytest.mark.parametrize("alpha", sorted(MIX_KNOWN))
def test_mix_lambdas_known_answers(alpha):
    lam = A.MixUp(alpha, num_classes=3, seed=7).lambdas(6, indices=MIX_KNOWN_INDICES, epoch=5)
    np.testing.assert_allclose(lam, [float.fromhex(h) for h in MIX_KNOWN[alpha]], rtol=1e-12, atol=0)
    cm = A.CutMix(alpha, num_classes=3, seed=7).lambdas(6, indices=MIX_KNOWN_INDICES, epoch=5)
    assert not np.array_equal(cm, lam)  # CutMix reads its own words


def test_cutmix_known_boxes():
    boxes, lam = A.CutMix(1.0, num_classes=3, seed=7).boxes((8, 32, 24, 3), indices=np.arange(8), epoch=1)
    assert boxes.tolist() == CUTMIX_KNOWN_BOXES
    assert np.array_equal(lam, 1.0 - (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2]) / (32 * 24))


#: From below torch's usual 0.2 down to 1e-6 (where Beta(alpha, alpha) is all but a fair coin on
#: {0, 1}) and up to 1e3 (all but 0.5), with the smallest and largest floats the checks let in.
ALPHAS = [5e-324, 1e-300, 1e-6, 1e-5, 1e-3, 2e-3, 1e-2, 0.1, 0.2, 1.0, 10.0, 100.0, 1e3, 1e300, 1.7e308]


@pytest.mark.parametrize("alpha", ALPHAS)
def test_mix_any_alpha_gives_finite_images_and_distributions(alpha):
    """Issue 27: MixUp(0.002) gave NaN images and label rows for ~5% of samples (all at 1e-5);
    CutMix with a small alpha gave boxes at -9.2e18 and label weights of +-1.4e17. Every alpha > 0
    now gives lambdas in [0, 1], images between the batch's extremes and label rows that are
    distributions."""
    n = 256
    x = RNG.random((n, 4, 5, 3), dtype=np.float32)
    y = np.arange(n) % 7
    for cls in (A.MixUp, A.CutMix):
        mix = cls(alpha, num_classes=7, seed=11)
        lam = mix.lambdas(n, indices=np.arange(n), epoch=3)
        assert np.isfinite(lam).all() and ((lam >= 0) & (lam <= 1)).all(), (cls.__name__, lam)
        with np.errstate(all="raise"):
            out, soft = mix(x, y, indices=np.arange(n), epoch=3)
        assert np.isfinite(out).all() and out.min() >= x.min() and out.max() <= x.max()
        assert np.isfinite(soft).all() and (soft >= 0).all() and (soft <= 1).all()
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=0, atol=1e-6)
    boxes, lam = A.CutMix(alpha, num_classes=7, seed=11).boxes((n, 4, 5, 3), indices=np.arange(n), epoch=3)
    assert (boxes >= 0).all() and (boxes[:, 1] <= 4).all() and (boxes[:, 3] <= 5).all()
    assert (boxes[:, 0] <= boxes[:, 1]).all() and (boxes[:, 2] <= boxes[:, 3]).all()
    assert ((lam >= 0) & (lam <= 1)).all()


@pytest.mark.parametrize("alpha", [1e-6, 1e-5, 1e-3, 2e-3, 1e-2, 0.1, 1.0, 10.0, 1e3])
def test_mix_lambda_moments_for_every_alpha(alpha):
    """Beta(alpha, alpha): mean 1/2, variance 1/(4 (2 alpha + 1)), P(lam < 1/2) = 1/2, each within
    5 standard errors (a two-sided level below 1e-6 per statistic); and for alpha >= 2e-3 the
    left tail P(lam < e**(-1/alpha)) of scipy's Beta within 5 standard errors of a binomial."""
    n = 20000
    lam = A.MixUp(alpha, num_classes=2, seed=4).lambdas(n, indices=np.arange(n), epoch=1)
    var = 1.0 / (4.0 * (2.0 * alpha + 1.0))
    mu4 = var**2 * (3.0 - 6.0 / (2.0 * alpha + 3.0))  # excess kurtosis of Beta(a, a): -6 / (2a + 3)
    assert abs(lam.mean() - 0.5) < 5 * math.sqrt(var / n)
    assert abs(np.mean((lam - 0.5) ** 2) - var) < 5 * math.sqrt((mu4 - var**2) / n) + 1e-12
    assert abs(np.mean(lam < 0.5) - 0.5) < 5 * math.sqrt(0.25 / n)
    if alpha >= 2e-3:
        stats = pytest.importorskip("scipy.stats")
        t = math.exp(-1.0 / alpha)
        p = float(stats.beta(alpha, alpha).cdf(t))
        assert abs(np.mean(lam < t) - p) < 5 * math.sqrt(p * (1 - p) / n) + 1e-12, (np.mean(lam < t), p)


@pytest.mark.parametrize("alpha", [1e-2, 0.1, 1.0, 10.0, 1e3])
def test_mix_lambdas_match_numpys_beta(alpha):
    """Two-sample Kolmogorov-Smirnov test against numpy.random.Generator.beta; level 0.001."""
    stats = pytest.importorskip("scipy.stats")
    n = 8000
    lam = A.MixUp(alpha, num_classes=2, seed=9).lambdas(n, indices=np.arange(n), epoch=0)
    ref = np.random.default_rng(9).beta(alpha, alpha, n)
    assert stats.ks_2samp(lam, ref).pvalue > 1e-3


def test_mix_lambdas_are_a_function_of_seed_epoch_and_index():
    mix = A.MixUp(1e-4, num_classes=3, seed=3)
    idx = np.array([9, 2, 700, 2**32 - 1])
    a = mix.lambdas(4, indices=idx, epoch=2)
    assert a.tobytes() == mix.lambdas(4, indices=idx, epoch=2).tobytes()
    assert a.tobytes() == A.MixUp(1e-4, num_classes=3, seed=3).lambdas(4, indices=idx, epoch=2).tobytes()
    assert np.array_equal(mix.lambdas(2, indices=idx[2:], epoch=2), a[2:])  # its own words, whatever the batch


def test_jitter_factors_uniform():
    """Mean and variance of the brightness factor on [0.6, 1.4] within 5 standard errors."""
    n = 20000
    prm = A.Pipeline([A.ColorJitter(brightness=0.4)], seed=3).sample_params((n, 2, 2, 3), indices=np.arange(n))[0]
    b = prm["brightness"].astype(np.float64)
    assert abs(b.mean() - 1.0) < 5 * math.sqrt(0.8**2 / 12 / n)
    assert abs(b.var() - 0.8**2 / 12) < 5 * 0.8**2 / 12 * math.sqrt(0.8 / n)
    perms3 = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    code = [perms3.index(tuple(o[:3])) for o in prm["order"].tolist()]
    assert (prm["order"][:, 3] == 3).all()  # without hue: regtune 0.1's orders of the three parts
    assert np.bincount(code, minlength=6).min() > n / 6 * 0.9


def test_jitter_hue_and_order_frequencies_chi_square():
    """With hue: the 24 orders equally likely and the shift uniform on [-0.2, 0.2] (20 bins):
    chi-square tests at significance 1e-4 each, fixed seed."""
    stats = pytest.importorskip("scipy.stats")
    n = 24000
    prm = A.Pipeline([A.ColorJitter(hue=0.2)], seed=4).sample_params((n, 2, 2, 3), indices=np.arange(n))[0]
    code = prm["order"] @ np.array([64, 16, 4, 1])
    counts = np.unique(code, return_counts=True)[1]
    assert len(counts) == 24 and stats.chisquare(counts).pvalue > 1e-4
    hist = np.histogram(prm["hue"], bins=20, range=(-0.2, 0.2))[0]
    assert hist.sum() == n and stats.chisquare(hist).pvalue > 1e-4


@pytest.mark.parametrize("factor", [-0.5, -0.31, -0.02, 0.07, 0.25, 0.5])
def test_hue_within_one_of_torchvisions_uint8_and_equal_on_float32(factor):
    """ColorJitter(hue=(f, f)) against torchvision's adjust_hue re-stated (_tv_adjust_hue; the
    registry's torchvision does not load with torch 2.13): on float32 images the same values (the
    masks' multiply-by-0 may differ in a zero's sign only); on uint8 within 1 of torchvision's
    uint8 result, which converts to float (x / 255), shifts, and converts back as
    ``(x * (255 + 1 - 1e-3)).to(uint8)`` (truncation), where regtune rounds once."""
    rgb = RNG.integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    rgb[0, :4] = rgb[0, :4, :, :1]  # gray pixels (max == min)
    rgb[0, 4, :, 1] = rgb[0, 4, :, 0]  # ties between the max channels
    pipe = A.Pipeline([A.ColorJitter(hue=(factor, factor))], seed=0)
    got8, got32 = pipe(rgb), pipe(rgb.astype(np.float32) / np.float32(255))
    for i in range(2):
        ref = _tv_adjust_hue(rgb[i].astype(np.float32) / np.float32(255), factor)
        np.testing.assert_array_equal(got32[i], ref)  # -0.0 == 0.0 here
        tv8 = (ref * np.float32(255 + 1 - 1e-3)).astype(np.uint8)
        assert np.abs(got8[i].astype(np.int64) - tv8).max() <= 1


# ----------------------------------------------------------------------------- MixUp, CutMix


def test_mixup_mixes_images_and_labels():
    x = IMG_F32
    y = np.array([0, 1, 2, 0, 1, 2])
    mix = A.MixUp(0.4, num_classes=3, seed=1)
    got, soft = mix(x, y, indices=IDX, epoch=1)
    lam = mix.lambdas(6, indices=IDX, epoch=1).astype(np.float32)
    ref = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * np.roll(x, 1, axis=0)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    onehot = np.eye(3, dtype=np.float32)[y]
    np.testing.assert_allclose(soft, lam[:, None] * onehot + (1 - lam[:, None]) * np.roll(onehot, 1, axis=0), atol=1e-6)
    np.testing.assert_allclose(soft.sum(1), 1, atol=1e-6)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_cutmix_pastes_the_box_and_adjusts_lambda(layout):
    x = IMG_F32 if layout == "NHWC" else np.ascontiguousarray(IMG_F32.transpose(0, 3, 1, 2))
    y = np.arange(6) % 4
    cm = A.CutMix(1.0, num_classes=4, seed=2, layout=layout)
    got, soft = cm(x, y, indices=IDX)
    boxes, lam = cm.boxes(x.shape, indices=IDX)
    prev = np.roll(x, 1, axis=0)
    for i, (y1, y2, x1, x2) in enumerate(boxes):
        ref = x[i].copy()
        sl = (slice(y1, y2), slice(x1, x2)) if layout == "NHWC" else (slice(None), slice(y1, y2), slice(x1, x2))
        ref[sl] = prev[i][sl]
        np.testing.assert_array_equal(got[i], ref)
        assert lam[i] == pytest.approx(1 - (y2 - y1) * (x2 - x1) / (13 * 17))
        assert soft[i, y[i]] >= np.float32(lam[i]) - 1e-6


def _ref_mixup(x, lam):
    """MixUp's documented NumPy expression (the one it had before the native kernel)."""
    xf = x.astype(np.float32)
    lx = lam.astype(np.float32)[:, None, None, None]
    return lx * xf + (np.float32(1) - lx) * np.roll(xf, 1, axis=0)


def _ref_cutmix(x, boxes, layout):
    """CutMix's documented NumPy loop (the one it had before the native kernel)."""
    out = x.astype(np.float32)
    prev = np.roll(out, 1, axis=0)
    for i, (y1, y2, x1, x2) in enumerate(boxes):
        sl = (slice(y1, y2), slice(x1, x2)) if layout == "NHWC" else (slice(None), slice(y1, y2), slice(x1, x2))
        out[i][sl] = prev[i][sl]
    return out


MIX_U8 = RNG.integers(0, 256, (9, 13, 17, 3), dtype=np.uint8)
MIX_F32 = (RNG.standard_normal((9, 13, 17, 3)) * 3).astype(np.float32)  # negative values and large ones too
MIX_IDX = RNG.permutation(1000)[:9]


def _mix_images(images, layout):
    return images if layout == "NHWC" else np.ascontiguousarray(images.transpose(0, 3, 1, 2))


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("images", [MIX_U8, MIX_F32], ids=["uint8", "float32"])
def test_mixup_is_the_numpy_expression_on_every_path_and_thread_count(images, layout):
    x = _mix_images(images, layout)
    mix = A.MixUp(0.7, num_classes=4, seed=8, layout=layout)
    ref = _ref_mixup(x, mix.lambdas(9, indices=MIX_IDX, epoch=4))
    for path in SIMD_PATHS:
        for threads in (1, 2, 3):
            with simd_path(path), num_threads(threads):
                got, _ = mix(x, np.arange(9) % 4, indices=MIX_IDX, epoch=4)
            assert got.dtype == np.float32 and got.shape == x.shape
            assert np.array_equal(got, ref), (path, threads)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("images", [MIX_U8, MIX_F32], ids=["uint8", "float32"])
def test_cutmix_is_the_numpy_loop_on_every_path_and_thread_count(images, layout):
    x = _mix_images(images, layout)
    cm = A.CutMix(1.0, num_classes=4, seed=9, layout=layout)
    boxes, _ = cm.boxes(x.shape, indices=MIX_IDX, epoch=2)
    h = boxes[:, 1] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 2]
    assert ((h > 0) & (w > 0)).any() and ((h < 13) | (w < 17)).any()  # real boxes, not the whole image
    ref = _ref_cutmix(x, boxes, layout)
    for path in SIMD_PATHS:
        for threads in (1, 2, 3):
            with simd_path(path), num_threads(threads):
                got, _ = cm(x, np.arange(9) % 4, indices=MIX_IDX, epoch=2)
            assert np.array_equal(got, ref), (path, threads)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_cutmix_core_edge_boxes(layout):
    """Empty boxes, the whole image, boxes touching each edge, and a batch of one (its own partner)."""
    x = _mix_images(MIX_U8[:6], layout)
    boxes = np.array([[0, 0, 0, 0], [0, 13, 0, 17], [3, 3, 2, 9], [0, 5, 12, 17], [7, 13, 0, 1], [12, 13, 16, 17]],
                     np.int32)  # fmt: skip
    out = np.empty(x.shape, np.float32)
    _core.augment_mix(x, out, None, boxes, layout == "NCHW")
    assert np.array_equal(out, _ref_cutmix(x, boxes, layout))
    one = np.empty(x[:1].shape, np.float32)
    _core.augment_mix(x[:1], one, np.array([0.3], np.float32), None, False)
    assert np.array_equal(one, _ref_mixup(x[:1], np.array([0.3])))


@pytest.mark.parametrize("make", [lambda: A.MixUp(0.5, num_classes=3, seed=1),
                                  lambda: A.CutMix(1.0, num_classes=3, seed=1, layout="NCHW")],
                         ids=["MixUp", "CutMix"])  # fmt: skip
def test_mix_out_is_filled_and_returned(make):
    mix = make()
    x = _mix_images(MIX_U8, "NCHW")
    y = np.arange(9) % 3
    ref, ref_soft = mix(x, y, indices=MIX_IDX)
    out = np.full(x.shape, np.nan, np.float32)
    got, soft = mix(x, y, indices=MIX_IDX, out=out)
    assert got is out
    assert np.array_equal(out, ref) and np.array_equal(soft, ref_soft)
    empty = np.empty((0,) + x.shape[1:], np.float32)
    got, soft = mix(x[:0], y[:0], out=empty)
    assert got is empty and soft.shape == (0, 3)
    assert mix(x[:0], y[:0])[0].shape == (0,) + x.shape[1:]


@pytest.mark.parametrize(
    "make_out,exc,match",
    [
        (lambda x: x, ValueError, "out overlaps images"),
        (lambda x: np.empty(x.size, np.float32), ValueError, "out must have shape"),
        (lambda x: np.empty(x.shape, np.float64), TypeError, "out must have dtype float32, got float64"),
        (lambda x: np.empty(x.shape[:3] + (4,), np.float32), ValueError, r"out must have shape \(9, 13, 17, 3\)"),
        (lambda x: np.empty((9, 13, 3, 17), np.float32).transpose(0, 1, 3, 2), ValueError, "out must be C-contiguous"),
        (lambda x: np.broadcast_to(np.float32(0), x.shape), ValueError, "out must"),
        ([1.0], TypeError, "out must"),
    ],
)
@pytest.mark.parametrize("cls", [A.MixUp, A.CutMix])
def test_mix_bad_out_names_out(cls, make_out, exc, match):
    mix = cls(num_classes=3, seed=0)
    x = MIX_F32.copy()
    out = make_out(x) if callable(make_out) else make_out
    with pytest.raises(exc, match=match):
        mix(x, np.arange(9) % 3, out=out)


@pytest.mark.parametrize("cls", [A.MixUp, A.CutMix])
def test_mix_out_partly_overlapping_images_is_refused(cls):
    """The partner reads make any shared memory wrong, not only out is images."""
    buf = np.zeros((18, 13, 17, 3), np.float32)
    x, out = buf[:9], buf[8:17]
    with pytest.raises(ValueError, match="out overlaps images"):
        cls(num_classes=3, seed=0)(x, np.arange(9) % 3, out=out)
    with pytest.raises(ValueError, match="out overlaps images"):  # the core checks it too
        _core.augment_mix(x, out, np.zeros(9, np.float32), None, False)


def test_mix_reads_uint8_without_a_float32_copy():
    """A uint8 batch goes to the kernel as it is: with out= given, the call allocates far less
    than a float32 copy of the batch (NumPy reports its buffers to tracemalloc)."""
    import tracemalloc

    x = RNG.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    out = np.empty(x.shape, np.float32)
    y = np.arange(64) % 10
    for mix in (A.MixUp(num_classes=10, seed=0), A.CutMix(num_classes=10, seed=0)):
        mix(x, y, out=out)  # warm up
        tracemalloc.start()
        try:
            mix(x, y, out=out)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < x.nbytes, (type(mix).__name__, peak)  # a float32 copy would be 4 * x.nbytes


def test_mix_python_threads_share_one_object():
    mix = A.MixUp(0.4, num_classes=3, seed=2)
    ref, _ = mix(MIX_U8, np.arange(9) % 3, indices=MIX_IDX)
    from .conftest import run_together

    for got, _ in run_together(4, lambda i: mix(MIX_U8, np.arange(9) % 3, indices=MIX_IDX)):
        assert np.array_equal(got, ref)


def test_core_mix_checks_its_arguments():
    x = MIX_U8[:2]
    out = np.empty(x.shape, np.float32)
    with pytest.raises(ValueError, match="exactly one of lam"):
        _core.augment_mix(x, out, None, None, False)
    with pytest.raises(ValueError, match="exactly one of lam"):
        _core.augment_mix(x, out, np.zeros(2, np.float32), np.zeros((2, 4), np.int32), False)
    with pytest.raises(ValueError, match=r"lam must have shape \(2,\)"):
        _core.augment_mix(x, out, np.zeros(3, np.float32), None, False)
    with pytest.raises(ValueError, match=r"boxes\[1\] = \(0, 14, 0, 1\) is not a box"):
        _core.augment_mix(x, out, None, np.array([[0, 1, 0, 1], [0, 14, 0, 1]], np.int32), False)
    with pytest.raises(ValueError, match=r"boxes\[0\] = \(2, 1, 0, 1\)"):
        _core.augment_mix(x, out, None, np.array([[2, 1, 0, 1], [0, 1, 0, 1]], np.int32), False)
    with pytest.raises(ValueError, match="is not a box"):  # read as NCHW, (2, 13, 17, 3) is 3 pixels wide
        _core.augment_mix(x, out, None, np.array([[0, 1, 0, 4], [0, 1, 0, 1]], np.int32), True)
    with pytest.raises(TypeError, match="out must have dtype float32"):
        _core.augment_mix(x, np.zeros(x.shape, np.float64), np.zeros(2, np.float32), None, False)
    with pytest.raises(ValueError, match="out must have the shape of images"):
        _core.augment_mix(x, out[:1], np.zeros(2, np.float32), None, False)


# ----------------------------------------------------------------------------- invariance


def _full_pipe(layout="NCHW"):
    return A.Pipeline([A.RandomCrop(14, padding=3, padding_mode="reflect"), A.RandomResizedCrop((12, 11)),
                       A.HorizontalFlip(), A.VerticalFlip(0.3), A.ColorJitter(0.3, 0.3, 0.3, 0.1), A.GaussianNoise(4.0),
                       A.Normalize(MEAN, STD), A.RandomErasing(0.5)], seed=21, layout=layout)  # fmt: skip


def _int_pipe():
    return A.Pipeline([A.RandomCrop(16, padding=4), A.HorizontalFlip(), A.RandomErasing(0.5, value=9)], seed=22)


def _erase_random_pipe():
    """value="random" boxes cut by the row blocks (40 x 44 x 3: 31 rows per block)."""
    return A.Pipeline([A.RandomResizedCrop((40, 44)), A.HorizontalFlip(), A.Normalize(MEAN, STD),
                       A.RandomErasing(0.8, scale=(0.1, 0.4), value="random")], seed=23, layout="NCHW")  # fmt: skip


def _shrink_pipe():
    """Antialiased shrinks by 1x to 8x: samples with 1 to 5 tap pairs per axis in one batch
    (each uses its own), the fused Normalize path (NCHW float32) with several row pairs."""
    return A.Pipeline([A.RandomResizedCrop((2, 3), scale=(0.1, 1.0)), A.HorizontalFlip(), A.Normalize(MEAN, STD)],
                      seed=24, layout="NCHW")  # fmt: skip


def _eval_pipe():
    return A.Pipeline([A.Resize(7), A.CenterCrop((5, 6))], seed=25)


BIG = RNG.integers(0, 256, (37, 16, 16, 3), dtype=np.uint8)
BIG_IDX = RNG.permutation(10_000)[:37]


@pytest.mark.parametrize("make", [_full_pipe, _int_pipe, _erase_random_pipe, _shrink_pipe, _eval_pipe],
                         ids=["bilinear", "integer", "erase-random", "antialias-shrink", "resize-centercrop"])
def test_same_sample_same_result_whatever_the_batch(make):
    pipe = make()
    whole = pipe(BIG, indices=BIG_IDX, epoch=5)
    for cut in (1, 10, 36):
        parts = np.concatenate([pipe(BIG[:cut], indices=BIG_IDX[:cut], epoch=5),
                                pipe(BIG[cut:], indices=BIG_IDX[cut:], epoch=5)])  # fmt: skip
        np.testing.assert_array_equal(parts, whole)
    order = RNG.permutation(37)
    np.testing.assert_array_equal(pipe(BIG[order], indices=BIG_IDX[order], epoch=5), whole[order])
    if any(op.nwords for op in pipe.ops):
        assert not np.array_equal(pipe(BIG, indices=BIG_IDX, epoch=6), whole)  # a new epoch, new choices


@pytest.mark.parametrize("make", [_full_pipe, _int_pipe, _erase_random_pipe, _shrink_pipe, _eval_pipe],
                         ids=["bilinear", "integer", "erase-random", "antialias-shrink", "resize-centercrop"])
def test_bit_identical_across_threads_and_simd_paths(make):
    pipe = make()
    ref = None
    for path in SIMD_PATHS:
        for threads in (1, 2, 3):
            with simd_path(path), num_threads(threads):
                got = pipe(BIG, indices=BIG_IDX, epoch=1)
            if ref is None:
                ref = got
            assert got.tobytes() == ref.tobytes(), (path, threads)


def test_every_path_handles_ragged_widths_and_the_last_row():
    """Widths that are not multiples of any vector width, and the very last row of the array
    (the uint8 gathers read 4 bytes per pixel: the last one comes from a padded copy)."""
    imgs = RNG.integers(0, 256, (3, 5, 19, 3), dtype=np.uint8)
    pipe = A.Pipeline([A.RandomResizedCrop((5, 23), scale=(0.9, 1.0)), A.VerticalFlip(1.0)], seed=4)
    outs = []
    for path in SIMD_PATHS:
        with simd_path(path):
            outs.append(pipe(imgs[:, :, :, :1].copy()))
            outs.append(pipe(imgs))
    for k in range(2, len(outs)):
        np.testing.assert_array_equal(outs[k], outs[k % 2])


def test_seed_kinds_and_key_separation():
    a = A.Pipeline([A.HorizontalFlip()], seed=np.random.SeedSequence(5))
    b = A.Pipeline([A.HorizontalFlip()], seed=np.random.SeedSequence(5))
    assert a.key == b.key
    assert A.Pipeline([], seed=5).key != 5  # never regtune.random's key for the same seed
    assert A.Pipeline([], seed=None).key != A.Pipeline([], seed=None).key


# ----------------------------------------------------------------------------- out=, threads, GIL


def test_out_is_filled_and_returned():
    pipe = _full_pipe()
    out = np.empty(pipe.output_shape(BIG.shape), np.float32)
    assert pipe(BIG, indices=BIG_IDX, out=out) is out
    np.testing.assert_array_equal(out, pipe(BIG, indices=BIG_IDX))


def test_empty_batch_and_python_threads():
    pipe = _full_pipe()
    assert pipe(BIG[:0], indices=[]).shape == (0, 3, 12, 11)
    ref = pipe(BIG, indices=BIG_IDX)
    from .conftest import run_together

    outs = run_together(4, lambda i: pipe(BIG, indices=BIG_IDX))  # the GIL is released; no shared state
    for o in outs:
        np.testing.assert_array_equal(o, ref)


def test_torch_tensor_input():
    torch = pytest.importorskip("torch")
    pipe = _int_pipe()
    np.testing.assert_array_equal(pipe(torch.from_numpy(BIG)), pipe(BIG))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda p: p(IMG_U8.astype(np.int16)), TypeError, "images must have dtype uint8 or float32"),
        (lambda p: p(IMG_U8[0]), ValueError, "images must be 4-D"),
        (lambda p: p(np.zeros((2, 3, 16, 16), np.uint8)), ValueError, "images must be NHWC.*transpose"),
        (lambda p: p(IMG_U8, indices=[1, 2]), ValueError, "indices has 2 entries but images has 6"),
        (lambda p: p(IMG_U8, indices=np.arange(6.0)), TypeError, "indices must hold integers"),
        (lambda p: p(IMG_U8, indices=-np.arange(6)), ValueError, "indices must be in"),
        (lambda p: p(IMG_U8, epoch=-1), ValueError, "epoch must be in"),
        (lambda p: p(IMG_U8, epoch=1.5), TypeError, "epoch must be an int"),
        (lambda p: p(IMG_U8, out=np.empty((6, 13, 17, 3), np.float64)), TypeError, "out must have dtype uint8"),
        (lambda p: p(IMG_U8, out=np.empty((6, 13, 17, 4), np.uint8)), ValueError, "out must have shape"),
        (lambda p: p(IMG_U8, out=np.empty((6, 17, 13, 3), np.uint8).transpose(0, 2, 1, 3)), ValueError,
         "out must be C-contiguous"),
        (lambda p: p(IMG_U8, out=IMG_U8), ValueError, "out overlaps images"),
    ],
)
def test_bad_call_arguments_name_the_argument(call, exc, match):
    pipe = A.Pipeline([A.HorizontalFlip()], seed=0)
    with pytest.raises(exc, match=match):
        call(pipe)


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: A.HorizontalFlip(1.5), ValueError, r"p must be in \[0, 1\]"),
        (lambda: A.VerticalFlip(-0.1), ValueError, r"p must be in \[0, 1\]"),
        (lambda: A.RandomErasing(p=2), ValueError, r"p must be in \[0, 1\]"),
        (lambda: A.RandomErasing(scale=(0.5, 0.1)), ValueError, "scale must have"),
        (lambda: A.RandomErasing(value="foo"), ValueError,
         "value must be a number, one number per channel or 'random', got value='foo'"),
        (lambda: A.RandomErasing(value="Random"), ValueError, "value=.Random."),
        (lambda: A.RandomCrop(0), ValueError, "size must be >= 1"),
        (lambda: A.RandomCrop(8, padding=-1), ValueError, "padding must be >= 0"),
        (lambda: A.RandomCrop(8, padding_mode="wrap"), ValueError, "padding_mode must be one of"),
        (lambda: A.RandomResizedCrop(8, ratio=(0, 1)), ValueError, "ratio"),
        (lambda: A.Normalize(0.5, (0.2, 0.0, 0.1)), ValueError, "std must be > 0"),
        (lambda: A.GaussianNoise(-1), ValueError, "std must be in"),
        (lambda: A.MixUp(0, num_classes=3), ValueError, "alpha must be in"),
        (lambda: A.Pipeline([A.Normalize(0.5, 0.5), A.HorizontalFlip()]), ValueError, r"ops\[1\].*geometric"),
        (lambda: A.Pipeline([A.Normalize(0.5, 0.5), A.ColorJitter(0.1)]), ValueError, r"ops\[1\].*before Normalize"),
        (lambda: A.Pipeline([A.RandomResizedCrop(4), A.RandomResizedCrop(4)]), ValueError, r"ops\[1\]"),
        (lambda: A.Pipeline([A.Resize(8), A.RandomResizedCrop(4)]), ValueError, r"ops\[1\].*one resampling op"),
        (lambda: A.RandomResizedCrop(8, antialias="yes"), TypeError, "antialias must be a bool"),
        (lambda: A.Resize(8, antialias=1), TypeError, "antialias must be a bool"),
        (lambda: A.Resize(0), ValueError, "size must be >= 1"),
        (lambda: A.Resize(2**31), ValueError, r"size must be <= 2147483647"),
        (lambda: A.Resize((4, 0)), ValueError, "size must be >= 1"),
        (lambda: A.Resize(2.5), TypeError, "size must be an int"),
        (lambda: A.Resize((8, 8), max_size=10), ValueError, "max_size is only allowed when size is an int"),
        (lambda: A.Resize(8, max_size=8), ValueError, "max_size must be > size"),
        (lambda: A.Resize(8, max_size=-1), ValueError, "max_size must be >= 1"),
        (lambda: A.CenterCrop(0), ValueError, "size must be >= 1"),
        (lambda: A.ColorJitter(hue=0.6), ValueError, r"hue must be in \[0, 0.5\], got hue=0.6"),
        (lambda: A.ColorJitter(hue=-0.1), ValueError, "hue must be in"),
        (lambda: A.ColorJitter(hue=(-0.6, 0.1)), ValueError, r"hue\[0\] must be in"),
        (lambda: A.ColorJitter(hue=(0.3, 0.1)), ValueError, r"hue must have hue\[0\] <= hue\[1\]"),
        (lambda: A.Pipeline([A.ColorJitter(hue=0.1)])(np.zeros((1, 4, 4, 1), np.uint8)), ValueError,
         "hue=...\\) needs 3 channels"),
        (lambda: A.CenterCrop(4, fill=float("nan")), ValueError, "fill"),
        (lambda: A.Pipeline([A.HorizontalFlip(), "flip"]), TypeError, r"ops\[1\] must be"),
        (lambda: A.Pipeline([A.MixUp(num_classes=2)]), TypeError, r"ops\[0\] is MixUp"),
        (lambda: A.Pipeline([], layout="CHW"), ValueError, "layout must be"),
        # a str option given an array, a list or None: named, not NumPy's "truth value of an array"
        (lambda: A.Pipeline([], layout=np.array(["NHWC", "NCHW"])), ValueError, "layout must be"),
        (lambda: A.MixUp(num_classes=2, layout=["NHWC"]), ValueError, "layout must be"),
        (lambda: A.RandomCrop(8, padding_mode=np.array(["edge", "reflect"])), ValueError, "padding_mode must be one of"),
        (lambda: A.AutoAugment(["imagenet"]), ValueError, "policy must be one of"),
        (lambda: A.TrivialAugmentWide(interpolation=np.array(["nearest"] * 2)), ValueError, "interpolation must be"),
        (lambda: A.RandAugment(interpolation=None), ValueError, "interpolation must be"),
        (lambda: A.Pipeline([A.RandomResizedCrop(4)])(np.zeros((2, 0, 5, 3), np.uint8)), ValueError,
         r"RandomResizedCrop needs images with pixels, got height and width \(0, 5\)"),
        (lambda: A.Pipeline([A.RandomResizedCrop(4)]).output_shape((2, 5, 0, 3)), ValueError,
         "RandomResizedCrop needs images with pixels"),
        (lambda: A.Pipeline([A.RandomCrop(4, padding=1, fill=1), A.RandomTranslate(1, fill=2)]), ValueError, "fill"),
    ],
)
def test_bad_op_arguments_name_the_argument(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


# ------------------------------------------------- hostile constructor arguments (issue 27)

F32_MAX = float(np.finfo(np.float32).max)
HUGE_INTS = [2**31, 2**32, 2**63 - 1, 2**63, 2**64, 10**30]

#: (constructor call, exception, pattern naming the argument): refused where the op is made, not
#: later inside a pipeline call as an OverflowError ("Python int too large to convert to C
#: long"), NumPy's "array is too big", a RuntimeWarning or a silent inf/NaN in the output.
HOSTILE_OPS = (
    [(lambda b=b: A.RandomCrop(8, padding=b), ValueError, r"padding must be <= 2\*\*30") for b in HUGE_INTS]
    + [(lambda b=b: A.RandomCrop(8, padding=(1, b)), ValueError, r"padding\[1\] must be <= 2\*\*30") for b in HUGE_INTS]
    + [(lambda b=b: A.RandomCrop(8, padding=(0, 0, 0, b)), ValueError, r"padding\[3\] must be <= 2\*\*30")
       for b in HUGE_INTS]
    + [(lambda b=b: A.RandomCrop(b), ValueError, r"size must be <= 2\*\*31 - 1") for b in HUGE_INTS]
    + [(lambda b=b: A.RandomCrop((4, b)), ValueError, r"size must be <= 2\*\*31 - 1") for b in HUGE_INTS]
    + [(lambda b=b: A.RandomResizedCrop(b), ValueError, r"size must be <= 2\*\*31 - 1") for b in HUGE_INTS]
    + [(lambda b=b: A.RandomTranslate(b), ValueError, r"shift must be <= 2\*\*30") for b in HUGE_INTS]
    + [
        (lambda: A.RandomCrop(8, padding=2.0), TypeError, "padding must be an int"),
        (lambda: A.RandomCrop(8, padding=True), TypeError, "padding must be an int"),
        (lambda: A.RandomCrop(8, padding=(1, 2, 3)), ValueError, "padding must be an int or a sequence of 2 or 4"),
        (lambda: A.RandomCrop(8, padding="4"), TypeError, "padding must be an int"),
        (lambda: A.RandomCrop(8, padding=None), TypeError, "padding must be an int"),
        (lambda: A.RandomCrop(8, padding=1, fill=1e39), ValueError, r"fill must be in \[-3.40282e\+38, 3.40282e\+38\]"),
        (lambda: A.RandomCrop(8, padding=1, fill=(0, -1e300, 0)), ValueError, r"fill\[1\] must be in"),
        (lambda: A.RandomTranslate(2, fill=float("nan")), ValueError, "fill must be finite"),
        (lambda: A.RandomErasing(value=1e39), ValueError, r"value must be in \[-3.40282e\+38"),
        (lambda: A.RandomErasing(value=(1, 2, float("inf"))), ValueError, r"value\[2\] must be finite"),
        (lambda: A.ColorJitter(brightness=1e39), ValueError, r"brightness must be in \[0, 3.40282e\+38\]"),
        (lambda: A.ColorJitter(contrast=(0.5, 1e300)), ValueError, r"contrast\[1\] must be in"),
        (lambda: A.ColorJitter(saturation=float("inf")), ValueError, "saturation must be finite"),
        (lambda: A.GaussianNoise(1e300, clip=False), ValueError, r"std must be in \[0, 2.12676e\+37\]"),
        (lambda: A.GaussianNoise(1e38), ValueError, "std must be in"),
        (lambda: A.Normalize(0.5, 1e-320), ValueError, r"std\[0\]=1e-320.*not finite in float32"),
        (lambda: A.Normalize(0.5, (0.2, 1e-320, 0.2)), ValueError, r"std\[1\]=1e-320"),
        (lambda: A.Normalize(0.5, 1e308), ValueError, r"std\[0\]=1e\+308.*rounds to 0 in float32"),
        (lambda: A.Normalize(1e300, 1.0), ValueError, r"mean\[0\]=1e\+300 and std\[0\]=1.0 make -mean / std"),
        (lambda: A.Normalize((0.1, 1e3), (1.0, 1e-36)), ValueError, r"mean\[1\]=1000.0 and std\[1\]=1e-36"),
        (lambda: A.Normalize(0.5, 0.5, max_pixel_value=1e-320), ValueError, r"max_pixel_value=1e-320"),
        (lambda: A.Normalize(0.5, 0.5, max_pixel_value=1e300), ValueError, r"max_pixel_value=1e\+300"),
        (lambda: A.MixUp(float("nan"), num_classes=3), ValueError, "alpha must be finite"),
        (lambda: A.MixUp(-1e-300, num_classes=3), ValueError, "alpha must be in"),
        (lambda: A.CutMix(float("inf"), num_classes=3), ValueError, "alpha must be finite"),
        (lambda: A.CutMix("1", num_classes=3), TypeError, "alpha must be a real number"),
        (lambda: A.MixUp(1.0, num_classes=0), ValueError, "num_classes must be >= 1"),
        (lambda: A.MixUp(1.0, num_classes=3.0), TypeError, "num_classes must be an int"),
        (lambda: A.CutMix(1.0, num_classes=True), TypeError, "num_classes must be an int"),
        (lambda: A.CutMix(1.0, num_classes=2**63), ValueError, "num_classes must be <= 9223372036854775807"),
    ]
)  # fmt: skip


@pytest.mark.parametrize("make,exc,match", HOSTILE_OPS, ids=[f"op{i}" for i in range(len(HOSTILE_OPS))])
def test_hostile_op_arguments_are_refused_at_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_issue_27_padding_overflow_is_a_value_error_naming_padding():
    with pytest.raises(ValueError, match=r"padding must be <= 2\*\*30 .*got padding=9223372036854775808"):
        A.Pipeline([A.RandomCrop(8, padding=2**63)])
    crop = A.RandomCrop(8, padding=2**30)  # the largest accepted padding still runs
    out = A.Pipeline([crop], seed=0)(IMG_U8)
    assert out.shape == (6, 8, 8, 3) and not out.any()  # all padding


@pytest.mark.parametrize("shape", [(2, 32, 32), (2, 32, 32, 3, 1), (), None, "abcd", 5, (2.0, 8, 8, 3), (2, 8, 8, True),
                                   (-1, 8, 8, 3), (2, 8, 8, 0), (2, 8, 8, 5), (2**63, 8, 8, 3), [2, np.float32(8), 8, 3]])  # fmt: skip
def test_pipeline_images_shape_is_named(shape):
    """Issue 27: sample_params((2, 32, 32)) raised "not enough values to unpack"."""
    pipe = A.Pipeline([A.RandomCrop(8)], seed=0)
    for method in (pipe.sample_params, pipe.output_shape):
        with pytest.raises((TypeError, ValueError), match="images_shape"):
            method(shape)
    if shape not in ((2, 8, 8, 0), (2, 8, 8, 5)):  # boxes need no channels
        with pytest.raises((TypeError, ValueError), match="images_shape"):
            A.CutMix(num_classes=3, seed=0).boxes(shape)


def test_images_shape_of_ints_of_any_kind_is_fine():
    pipe = A.Pipeline([A.RandomCrop(8)], seed=0)
    assert pipe.output_shape([np.int64(2), 16, np.uint8(16), 3]) == (2, 8, 8, 3)
    assert pipe.sample_params(np.array([2, 16, 16, 3]))[0]["top"].shape == (2,)
    assert A.CutMix(num_classes=3, seed=0, layout="NCHW").boxes((0, 3, 8, 8))[0].shape == (0, 4)
    boxes, lam = A.CutMix(num_classes=3, seed=0, layout="NCHW").boxes((2, 3, 0, 8))
    assert boxes.shape == (2, 4) and (lam == 1).all()  # no pixels: nothing pasted (it was 0 / 0)
    mixed, soft = A.CutMix(num_classes=3, seed=0)(np.zeros((2, 0, 5, 3), np.float32), np.array([0, 2]))
    assert mixed.shape == (2, 0, 5, 3) and np.array_equal(soft, np.eye(3, dtype=np.float32)[[0, 2]])


@pytest.mark.parametrize("n", [-1, 2.0, None, True, "3", 2**64])
def test_mix_lambdas_count_is_named(n):
    with pytest.raises((TypeError, ValueError), match=r"\bn\b"):
        A.MixUp(num_classes=3, seed=0).lambdas(n)


@pytest.mark.parametrize("cls", [A.MixUp, A.CutMix])
def test_mix_soft_labels_that_cannot_fit_in_memory_name_num_classes(cls):
    """(n, num_classes) float32 soft labels are made for each call: num_classes=2**40 asked NumPy
    for terabytes (and 2**31 for gigabytes that overcommit handed out and the kernel then killed
    the process for); refused first, with a MemoryError naming num_classes."""
    mix = cls(1.0, num_classes=2**40, seed=0)
    with pytest.raises(MemoryError, match=r"num_classes=1099511627776"):
        mix(IMG_F32, np.arange(6))
    assert cls(1.0, num_classes=1000, seed=0)(IMG_F32, np.arange(6))[1].shape == (6, 1000)


def test_huge_box_proposals_fail_their_tries_instead_of_overflowing():
    """RandomResizedCrop and RandomErasing with extreme scale/ratio: every try is out of the image
    (torchvision's fallback, nothing erased), without a cast of inf or NaN to int."""
    with np.errstate(all="raise"):
        crop = A.Pipeline([A.RandomResizedCrop(4, scale=(1e300, 1e308))], seed=0).sample_params(IMG_U8.shape)[0]
        crop2 = A.Pipeline([A.RandomResizedCrop(4, ratio=(1e-320, 1e-300))], seed=0).sample_params(IMG_U8.shape)[0]
        out = A.Pipeline([A.RandomErasing(1.0, ratio=(1e300, 1e308))], seed=0)(IMG_U8)
    assert (crop["height"] == 13).all() and (crop["width"] == 17).all()  # the fallback: the whole image
    assert (crop2["height"] <= 13).all() and (crop2["width"] <= 17).all()
    assert np.array_equal(out, IMG_U8)


@pytest.mark.parametrize("hw,ratio,box", [((5, 1), (10, 20), (2, 0, 1, 1)), ((1, 5), (0.01, 0.02), (0, 2, 1, 1)),
                                          ((13, 17), (1e-320, 1e-300), (0, 8, 13, 1))])  # fmt: skip
def test_the_fallback_crop_keeps_a_pixel(hw, ratio, box):
    """torchvision's fallback box rounds to 0 pixels on a side where the image is far outside
    ``ratio`` (its resize of that box then fails); regtune's keeps one pixel, centred, and the
    output is that pixel's value, not zeros."""
    x = np.arange(2 * hw[0] * hw[1] * 3, dtype=np.uint8).reshape((2,) + hw + (3,)) + 1
    pipe = A.Pipeline([A.RandomResizedCrop(4, scale=(0.9, 1.0), ratio=ratio)], seed=1)
    prm = pipe.sample_params(x.shape)[0]
    assert [tuple(prm[k]) for k in ("top", "left", "height", "width")] == [(v, v) for v in box]
    top, left, h, w = box
    got = pipe(x)
    if h == w == 1:
        assert np.array_equal(got, np.broadcast_to(x[:, top:top + 1, left:left + 1], (2, 4, 4, 3)))
    else:  # one column: its resize, the same in every output column
        assert np.array_equal(got, np.broadcast_to(got[:, :, :1], got.shape)) and got.min() > 0


def test_crop_larger_than_padded_image():
    with pytest.raises(ValueError, match=r"size \(20, 20\) is larger than the padded image \(17, 21\)"):
        A.Pipeline([A.RandomCrop(20, padding=2)])(IMG_U8)
    with pytest.raises(ValueError, match="shift must be < the image"):
        A.Pipeline([A.RandomTranslate(17)])(IMG_U8)
    tall = A.Pipeline([A.RandomTranslate(13)], seed=0)(IMG_U8)  # may empty a 13-row image: allowed, as the trainer
    assert tall.shape == IMG_U8.shape


def test_per_channel_values_must_match_the_channels():
    with pytest.raises(ValueError, match="mean has 2 values but the images have 3 channels"):
        A.Pipeline([A.Normalize((0.5, 0.5), 0.5)])(IMG_U8)
    with pytest.raises(ValueError, match="saturation.*needs 3 channels"):
        A.Pipeline([A.ColorJitter(saturation=0.2)])(IMG_U8[..., :1].copy())
    with pytest.raises(ValueError, match="contrast.*needs 1 or 3 channels"):
        A.Pipeline([A.ColorJitter(contrast=0.2)])(np.zeros((2, 4, 4, 4), np.uint8))
    four = np.full((2, 4, 4, 4), 100, np.uint8)  # brightness alone works on any channel count
    got = A.Pipeline([A.ColorJitter(brightness=0.5)], seed=1)(four)
    f = A.Pipeline([A.ColorJitter(brightness=0.5)], seed=1).sample_params(four.shape)[0]["brightness"]
    np.testing.assert_array_equal(got, _to_u8(np.float32(100) * f[:, None, None, None] + np.zeros((2, 4, 4, 4), np.float32)))


def test_mix_label_checks():
    mix = A.MixUp(num_classes=3, seed=0)
    with pytest.raises(ValueError, match="labels must be in"):
        mix(IMG_F32, np.array([0, 1, 2, 3, 0, 1]))
    with pytest.raises(ValueError, match="labels has 2 entries"):
        mix(IMG_F32, np.array([0, 1]))
    with pytest.raises(TypeError, match="labels must be class indices"):
        mix(IMG_F32, np.zeros(6, np.float32))


def test_core_rejects_out_of_range_tables():
    """_core checks what the Python layer builds, so no direct call can read outside the image."""
    x = np.zeros((1, 4, 4, 1), np.uint8)
    out = np.zeros((1, 4, 4, 1), np.uint8)
    good = np.zeros((1, 4), np.int32)
    bad = np.full((1, 4), 4, np.int32)
    fill = np.zeros(1, np.float32)
    idx = np.zeros(1, np.uint64)
    with pytest.raises(ValueError, match="row_i0 holds 4"):
        _core.augment_run(x, out, False, False, bad, None, None, None, good, None, None, None, fill, [], 0, 0, idx)
    with pytest.raises(ValueError, match="RandomErasing box outside"):
        steps = [("erase", {"op_position": 0, "per_sample": np.array([[3, 0, 2, 1]], np.float32),
                            "values": np.zeros(1, np.float32)})]
        _core.augment_run(x, out, False, False, good, None, None, None, good, None, None, None, fill, steps, 0, 0, idx)


def test_dataloader_example_same_batches_with_0_and_2_workers():
    """examples/augment_dataloader.py: a torch DataLoader fed through the pipeline gives the
    same batches with num_workers=0 and 2 (one epoch here)."""
    pytest.importorskip("torch")
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parent.parent / "examples" / "augment_dataloader.py"
    spec = importlib.util.spec_from_file_location("augment_dataloader", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.batches(num_workers=0, epochs=1) == mod.batches(num_workers=2, epochs=1)


@pytest.mark.parametrize("images", [IMG_U8, IMG_F32], ids=["uint8", "float32"])
def test_nchw_is_the_transpose_of_nhwc(images):
    ops = [A.RandomCrop(9), A.ColorJitter(0.3, 0.3, 0.3), A.GaussianNoise(3.0 if images.dtype == np.uint8 else 0.02),
           A.RandomErasing(1.0, value=(7, 8, 9))]  # fmt: skip
    nhwc = A.Pipeline(ops, seed=1)(images, indices=IDX)
    nchw = A.Pipeline(ops, seed=1, layout="NCHW")(images, indices=IDX)
    assert nhwc.dtype == images.dtype
    np.testing.assert_array_equal(nhwc.transpose(0, 3, 1, 2), nchw)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("erase_after", [False, True])
def test_normalize_to_bfloat16_is_the_float32_result_rounded(layout, erase_after):
    import ml_dtypes

    ops32 = [A.RandomResizedCrop((10, 12)), A.Normalize(MEAN, STD)] + ([A.RandomErasing(0.7, value=0.3)] if erase_after else [])
    opsbf = [A.RandomResizedCrop((10, 12)), A.Normalize(MEAN, STD, dtype=ml_dtypes.bfloat16)] + (
        [A.RandomErasing(0.7, value=0.3)] if erase_after else [])  # fmt: skip
    ref = A.Pipeline(ops32, seed=3, layout=layout)(IMG_U8, indices=IDX)
    pipe = A.Pipeline(opsbf, seed=3, layout=layout)
    got = pipe(IMG_U8, indices=IDX)
    assert got.dtype == ml_dtypes.bfloat16 and pipe.output_dtype(np.uint8) == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.view(np.uint16), ref.astype(ml_dtypes.bfloat16).view(np.uint16))
    out = np.empty_like(got)
    assert pipe(IMG_U8, indices=IDX, out=out) is out
    with pytest.raises(TypeError, match="out must have dtype bfloat16"):
        pipe(IMG_U8, indices=IDX, out=np.empty(got.shape, np.float32))
    with pytest.raises(TypeError, match="dtype must be float32 or ml_dtypes.bfloat16"):
        A.Normalize(MEAN, STD, dtype=np.float64)


@pytest.mark.parametrize("case", range(24))
def test_random_shapes_against_the_references(case):
    """Small and odd shapes (1-pixel images, crops wider than the image with padding, every channel
    count, both dtypes), every op chain of crop -> resized crop -> flips, against the NumPy
    transcriptions, on every SIMD path."""
    r = np.random.default_rng(100 + case)
    n, h, w, c = int(r.integers(1, 5)), int(r.integers(1, 9)), int(r.integers(1, 9)), int(r.integers(1, 5))
    dtype = (np.uint8, np.float32)[case % 2]
    imgs = r.integers(0, 256, (n, h, w, c)).astype(dtype) if dtype == np.uint8 else r.random((n, h, w, c), np.float32)
    pad = int(r.integers(0, 4))
    mode = A.PADDING_MODES[case % 4]
    ch, cw = int(r.integers(1, h + 2 * pad + 1)), int(r.integers(1, w + 2 * pad + 1))
    size = (int(r.integers(1, 12)), int(r.integers(1, 12)))
    antialias = case % 3 != 0
    ops = [A.RandomCrop((ch, cw), padding=pad, padding_mode=mode, fill=5), A.RandomResizedCrop(size, antialias=antialias),
           A.HorizontalFlip(), A.VerticalFlip()]  # fmt: skip
    pipe = A.Pipeline(ops, seed=case)
    idx = r.integers(0, 1000, n)
    prm = pipe.sample_params(imgs.shape, indices=idx)
    outs = []
    for path in SIMD_PATHS:
        with simd_path(path):
            outs.append(pipe(imgs, indices=idx))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    for i in range(n):
        ref = _ref_crop(imgs[i], prm[0]["top"][i], prm[0]["left"][i], (ch, cw), (pad,) * 4, mode, 5)
        t, l, bh, bw = (int(prm[1][k][i]) for k in ("top", "left", "height", "width"))
        ref = _ref_bilinear(ref, t, l, bh, bw, size, antialias)
        if prm[2]["flip"][i]:
            ref = ref[:, ::-1]
        if prm[3]["flip"][i]:
            ref = ref[::-1]
        np.testing.assert_array_equal(outs[0][i], _store(ref, dtype))


def test_fused_resize_normalize_path_gives_the_same_bits():
    """[RandomResizedCrop, flips, Normalize] into NCHW float32 runs row by row straight into the
    output (no block buffer); NHWC takes the general path: the same values, on every path."""
    imgs = RNG.integers(0, 256, (9, 37, 45, 3), dtype=np.uint8)
    ops = [A.RandomResizedCrop((19, 23)), A.HorizontalFlip(), A.VerticalFlip(), A.Normalize(MEAN, STD)]
    ref = A.Pipeline(ops, seed=12, layout="NHWC")(imgs).transpose(0, 3, 1, 2)
    for path in SIMD_PATHS:
        with simd_path(path):
            np.testing.assert_array_equal(A.Pipeline(ops, seed=12, layout="NCHW")(imgs), ref)


def test_core_steps_are_named_records_checked_field_by_field():
    # A step is (name, fields): a name of cpp/src/augment/steps.def and a dict its struct reads
    # by name; an unknown step, a missing or a misspelt field is refused, naming it.
    x = np.zeros((1, 4, 4, 1), np.uint8)
    out = np.zeros((1, 4, 4, 1), np.uint8)
    good = np.zeros((1, 4), np.int32)
    fill = np.zeros(1, np.float32)
    idx = np.zeros(1, np.uint64)

    def run(steps):
        _core.augment_run(x, out, False, False, good, None, None, None, good, None, None, None, fill, steps, 0, 0, idx)

    with pytest.raises(ValueError, match="unknown step 'blur'"):
        run([("blur", {})])
    with pytest.raises(ValueError, match="each step is \\(name, fields\\)"):
        run([(3, 0, None, None, 255.0, 0.0, False)])  # the positional tuples of before
    with pytest.raises(ValueError, match="step 'noise' needs 'std'"):
        run([("noise", {"op_position": 0, "bound": 255.0, "clip": True})])
    with pytest.raises(ValueError, match="step 'noise' has no field 'sd'"):
        run([("noise", {"op_position": 0, "bound": 255.0, "std": 1.0, "clip": True, "sd": 1.0})])
    with pytest.raises(ValueError, match="op_position must be in"):
        run([("noise", {"op_position": -1, "bound": 255.0, "std": 1.0, "clip": True})])
    with pytest.raises(ValueError, match="std must be >= 0"):
        run([("noise", {"op_position": 0, "bound": 255.0, "std": -1.0, "clip": True})])
    with pytest.raises(ValueError, match=r"values must have shape \(2,\)"):
        run([("normalize", {"values": np.zeros(3, np.float32)})])
    run([("normalize", {"values": np.array([1.0, 2.0], np.float32)})])
    assert (out == 2).all()  # 0 * 1 + 2


# ------------------------------------------------------------- policies and their image ops
#
# References: torchvision's tensor ops (transforms/v2/functional/_color.py, _geometry.py,
# _auto_augment.py of torchvision 0.29) re-stated below in NumPy float32, operation by operation,
# because the registry's torchvision does not load with torch 2.13; the geometric ops through
# torch.nn.functional.grid_sample (nearest, align_corners=False) on torchvision's _affine_grid,
# and equalize, posterize and solarize also against PIL's ImageOps directly (torchvision's
# equalize re-implements PIL's; its PIL path calls ImageOps).

F32 = np.float32


def _tv_u8(x):
    """torchvision's ``.to(torch.uint8)`` of a float tensor in [0, 255]: truncation."""
    return x.astype(np.uint8)


def _tv_gray(img):
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return (r * F32(0.2989) + g * F32(0.587)) + b * F32(0.114)


def _tv_blend(img, other, ratio, bound):
    return np.clip(img * F32(ratio) + other * F32(1.0 - ratio), F32(0), F32(bound))


def _tv_color_op(img, name, m, u8):
    """torchvision's _apply_image_or_video_transform for the non-geometric ops, on an (H, W, C)
    float32 array holding the image (0..255 values for uint8 images); returns float32 before
    torchvision's final conversion (the caller truncates uint8)."""
    bound = 255.0 if u8 else 1.0
    c = img.shape[-1]
    if name in ("Identity",):
        return img
    if name == "Brightness":
        return np.clip(img * F32(1.0 + m), F32(0), F32(bound))
    if name == "Color":
        if c == 1:
            return img
        gray = _tv_gray(img)
        gray = np.floor(gray) if u8 else gray
        return _tv_blend(img, gray[..., None], 1.0 + m, bound)
    if name == "Contrast":
        gray = (np.floor(_tv_gray(img)) if u8 else _tv_gray(img)) if c == 3 else img[..., 0]
        mean = F32(gray.astype(np.float64).mean())
        return _tv_blend(img, mean, 1.0 + m, bound)
    if name == "Sharpness":
        f = 1.0 + m
        h, w = img.shape[:2]
        if h <= 2 or w <= 2:
            return img
        a, b = F32(1.0 / 13.0), F32(5.0 / 13.0)
        out = img.copy()
        nb = sum(img[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
        blur = nb * a + img[1:-1, 1:-1] * b
        blur = np.round(blur) if u8 else blur
        view = out[1:-1, 1:-1]
        out[1:-1, 1:-1] = view + F32(1.0 - f) * (blur - view)
        return np.clip(out, F32(0), F32(bound))
    if name == "Posterize":
        bits = int(m)
        if u8:
            return img if bits >= 8 else (img.astype(np.uint8) & (((1 << bits) - 1) << (8 - bits))).astype(F32)
        levels = 1 << bits
        return np.clip(np.floor(img * F32(levels)), 0, levels - 1) * F32(1.0 / levels)
    if name == "Solarize":
        return np.where(img >= F32(bound * m), F32(bound) - img, img)
    if name == "Invert":
        return F32(bound) - img
    if name == "AutoContrast":
        lo, hi = img.min(axis=(0, 1)), img.max(axis=(0, 1))
        eq = hi == lo
        inv = (hi - lo) * F32(1.0 / bound)
        lo, inv = np.where(eq, F32(0), lo), np.where(eq, F32(1), inv)
        return np.clip((img - lo) / inv, F32(0), F32(bound))
    if name == "Equalize":
        q = img.astype(np.uint8) if u8 else (img * F32(255 + 1 - 1e-3)).astype(np.uint8)
        out = np.stack([_tv_equalize(q[..., k]) for k in range(c)], axis=-1)
        return out.astype(F32) if u8 else out.astype(F32) * F32(1.0 / 255)
    raise AssertionError(name)


def _tv_equalize(channel):
    """torchvision's equalize_image on one uint8 channel (its re-implementation of PIL's
    ImageOps.equalize): lut[k] = (cum_hist[k - 1] + step // 2) // step, clamped to 255, lut[0] = 0,
    step = (pixels - count of the last non-empty bin) // 255; step 0: unchanged."""
    flat = channel.reshape(-1).astype(np.int64)
    hist = np.bincount(flat, minlength=256)
    cum = np.cumsum(hist)
    step = (flat.size - hist[np.argmax(cum)]) // 255
    if step == 0:
        return channel
    lut = np.concatenate([[0], np.clip((cum[:-1] + step // 2) // step, 0, 255)]).astype(np.uint8)
    return lut[channel]


def _tv_inverse_affine(center, angle, translate, scale, shear):
    """torchvision's _get_inverse_affine_matrix, as written there (scalars, math)."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    cos_sy, tan_sx = math.cos(sy), math.tan(sx)
    rot_minus_sy = rot - sy
    cx_plus_tx, cy_plus_ty = cx + tx, cy + ty
    a = math.cos(rot_minus_sy) / cos_sy
    b = -(a * tan_sx + math.sin(rot))
    c = math.sin(rot_minus_sy) / cos_sy
    d = -(c * tan_sx - math.cos(rot))
    matrix = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0]
    matrix[2] += matrix[0] * (-cx_plus_tx) + matrix[1] * (-cy_plus_ty)
    matrix[5] += matrix[3] * (-cx_plus_tx) + matrix[4] * (-cy_plus_ty)
    matrix[2] += cx
    matrix[5] += cy
    return matrix


def _tv_geometric(img, name, m, fill=0.0):
    """torchvision's affine/rotate for the policies' geometric ops: the inverse matrix, _affine_grid
    and grid_sample(nearest, zeros, align_corners=False) in torch float32; outside: fill."""
    torch = pytest.importorskip("torch")
    h, w = img.shape[:2]
    if name == "Rotate":
        angle = m % 360
        matrix = _tv_inverse_affine([0.0, 0.0], -angle, [0.0, 0.0], 1.0, [0.0, 0.0])
    else:
        shear = {"ShearX": [math.degrees(math.atan(m)), 0.0], "ShearY": [0.0, math.degrees(math.atan(m))]}.get(name, [0.0, 0.0])
        translate = {"TranslateX": [int(m), 0], "TranslateY": [0, int(m)]}.get(name, [0, 0])
        center = [-w * 0.5, -h * 0.5] if name in ("ShearX", "ShearY") else [0.0, 0.0]  # center=[0, 0] in pixels
        matrix = _tv_inverse_affine(center, 0.0, [float(t) for t in translate], 1.0, shear)
    theta = torch.tensor(matrix, dtype=torch.float32).reshape(1, 2, 3)
    base = torch.empty(1, h, w, 3)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h).unsqueeze_(-1))
    base[..., 2].fill_(1)
    grid = base.view(1, h * w, 3).bmm(theta.transpose(1, 2).div_(torch.tensor([0.5 * w, 0.5 * h]))).view(1, h, w, 2)
    x = torch.from_numpy(np.ascontiguousarray(img, np.float32)).permute(2, 0, 1)[None]
    x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    y = torch.nn.functional.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
    out = torch.where(y[-1:] < 0.5, torch.tensor(float(fill)), y[:-1])
    return out.permute(1, 2, 0).numpy()


GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
POLICY_IMGS = RNG.integers(0, 256, (96, 20, 23, 3), dtype=np.uint8)
POLICY_IMGS[::7] //= 3  # some dark images (autocontrast, equalize stretch them)
POLICY_IMGS[1::5, :, :, 1:] = POLICY_IMGS[1::5, :, :, :1]  # gray images


@pytest.mark.parametrize("make", [lambda: A.TrivialAugmentWide(), lambda: A.RandAugment(num_ops=1, magnitude=20),
                                  lambda: A.AutoAugment("imagenet"), lambda: A.AutoAugment("svhn")],
                         ids=["trivial-wide", "randaugment", "autoaugment-imagenet", "autoaugment-svhn"])
def test_policy_ops_match_torchvision_on_uint8_and_float32(make):
    """Each sample's ops (read from sample_params) against torchvision's ops re-stated, in order:
    on uint8 within 1 of torchvision's uint8 results and equal on 99% of the values (regtune
    truncates after each op as torchvision does; the last bits of gray, mean and blends may differ
    where torch fuses a multiply-add); on float32 within 2e-6; geometric ops sample the pixels
    torch's grid_sample samples."""
    op = make()
    pipe = A.Pipeline([op], seed=31)
    n = len(POLICY_IMGS)
    idx = np.arange(n) * 7
    got8 = pipe(POLICY_IMGS, indices=idx)
    imgs32 = POLICY_IMGS.astype(np.float32) / F32(255)
    got32 = pipe(imgs32, indices=idx)
    prm = pipe.sample_params(POLICY_IMGS.shape, indices=idx)[0]
    seen, exact_geometric = set(), 0
    for i in range(n):
        ref8, ref32 = POLICY_IMGS[i].astype(F32), imgs32[i]
        geometric = False
        for name, m in zip(prm["op"][i], prm["magnitude"][i]):
            seen.add(name)
            if name in GEOMETRIC:
                geometric = True
                ref8, ref32 = _tv_geometric(ref8, name, m), _tv_geometric(ref32, name, m)
            else:
                ref8 = _tv_u8(_tv_color_op(ref8, name, m, True)).astype(F32)
                ref32 = _tv_color_op(ref32, name, m, False)
        d8 = np.abs(got8[i].astype(np.int64) - ref8.astype(np.int64))
        d32 = np.abs(got32[i] - ref32)
        what = (i, prm["op"][i], prm["magnitude"][i], d8.max(), d32.max())
        assert d8.max() <= 1 and (d8 > 0).mean() <= 0.01, what
        assert d32.max() <= 2e-6, what
        exact_geometric += geometric and d8.max() == 0 and d32.max() == 0
    assert len(seen) >= 8  # the batch covers most ops
    assert exact_geometric > 0


def test_policy_ops_on_one_channel_images():
    """Grayscale (1-channel) images: Color leaves them, Contrast uses the mean of the values, as
    torchvision; every op against the re-stated reference as above."""
    imgs = np.ascontiguousarray(POLICY_IMGS[:48, :, :, :1])
    pipe = A.Pipeline([A.RandAugment(num_ops=2, magnitude=17)], seed=5)
    got8, got32 = pipe(imgs), pipe(imgs.astype(np.float32) / F32(255))
    prm = pipe.sample_params(imgs.shape)[0]
    for i in range(len(imgs)):
        ref8, ref32 = imgs[i].astype(F32), imgs[i].astype(F32) / F32(255)
        for name, m in zip(prm["op"][i], prm["magnitude"][i]):
            if name in GEOMETRIC:
                ref8, ref32 = _tv_geometric(ref8, name, m), _tv_geometric(ref32, name, m)
            else:
                ref8 = _tv_u8(_tv_color_op(ref8, name, m, True)).astype(F32)
                ref32 = _tv_color_op(ref32, name, m, False)
        assert np.abs(got8[i].astype(np.int64) - ref8.astype(np.int64)).max() <= 1, (i, prm["op"][i])
        assert np.abs(got32[i] - ref32).max() <= 2e-6, (i, prm["op"][i])


def test_policy_chains_and_fill():
    """RandAugment(num_ops=3) applies its ops in order (float32 against the re-stated chain), and the
    geometric ops read `fill` outside the image."""
    pipe = A.Pipeline([A.RandAugment(num_ops=3, magnitude=25, fill=(0.25, 0.5, 0.75))], seed=8)
    imgs = POLICY_IMGS[:40].astype(np.float32) / F32(255)
    got = pipe(imgs)
    prm = pipe.sample_params(imgs.shape)[0]
    filled = 0
    for i in range(len(imgs)):
        ref = imgs[i]
        for name, m in zip(prm["op"][i], prm["magnitude"][i]):
            if name in GEOMETRIC:
                ref = _tv_geometric(ref, name, m, fill=np.nan)
                hole = np.isnan(ref)
                ref = np.where(hole, np.array([0.25, 0.5, 0.75], F32), ref)
                filled += hole.any()
            else:
                ref = _tv_color_op(ref, name, m, False)
        assert np.abs(got[i] - ref).max() <= 2e-6, (i, prm["op"][i])
    assert filled > 0


@pytest.mark.parametrize("op", [A.RandomInvert(1.0), A.RandomPosterize(3, 1.0), A.RandomPosterize(8, 1.0),
                                A.RandomSolarize(100, 1.0), A.RandomAutocontrast(1.0), A.RandomEqualize(1.0),
                                A.RandomAdjustSharpness(1.7, 1.0), A.RandomAdjustSharpness(0.2, 1.0)],
                         ids=repr)  # fmt: skip
@pytest.mark.parametrize("shape", [(6, 23, 17, 3), (6, 2, 9, 3), (6, 19, 21, 1)])
def test_policy_ops_read_the_uint8_image_after_a_float_step(op, shape):
    """A policy op after a step that computes in float (ColorJitter) on uint8 images reads the
    uint8 image torchvision's op would get (the jitter's result rounded), whichever op comes
    first: the same as running the op on the stored uint8 result of the jitter. (The rounding
    is folded into each op's first pass; this pins it down for every op, and for the images
    whose side is too short for sharpness.)"""
    imgs = POLICY_IMGS[: shape[0], : shape[1], : shape[2], : shape[3]].copy()
    jitter = A.ColorJitter(0.4, 0.4, 0.4 if shape[3] == 3 else 0)
    fused = A.Pipeline([jitter, op], seed=4)(imgs)
    jittered = A.Pipeline([jitter], seed=4)(imgs)
    assert jittered.dtype == np.uint8 and not np.array_equal(jittered, imgs)
    np.testing.assert_array_equal(fused, A.Pipeline([op], seed=4)(jittered))


def test_single_image_ops_match_pil():
    """RandomEqualize, RandomPosterize and RandomSolarize (p=1) on uint8: PIL's ImageOps.equalize,
    posterize and solarize exactly (torchvision's tensor ops equal PIL's on uint8); RandomInvert,
    RandomAutocontrast and RandomAdjustSharpness within 1 of torchvision's re-stated ops."""
    ImageOps = pytest.importorskip("PIL.ImageOps")
    Image = pytest.importorskip("PIL.Image")
    imgs = POLICY_IMGS[:12]
    cases = [(A.RandomEqualize(1.0), ImageOps.equalize, None), (A.RandomPosterize(3, 1.0), lambda im: ImageOps.posterize(im, 3), None),
             (A.RandomSolarize(100, 1.0), lambda im: ImageOps.solarize(im, 100), None),
             (A.RandomInvert(1.0), None, ("Invert", 0.0)), (A.RandomAutocontrast(1.0), None, ("AutoContrast", 0.0)),
             (A.RandomAdjustSharpness(1.7, 1.0), None, ("Sharpness", 0.7)),
             (A.RandomAdjustSharpness(0.2, 1.0), None, ("Sharpness", -0.8))]  # fmt: skip
    for op, pil, tv in cases:
        got = A.Pipeline([op], seed=0)(imgs)
        for i in range(len(imgs)):
            if pil is not None:
                ref = np.asarray(pil(Image.fromarray(imgs[i])))
                np.testing.assert_array_equal(got[i], ref, err_msg=repr(op))
            else:
                ref = _tv_u8(_tv_color_op(imgs[i].astype(F32), tv[0], tv[1], True))
                assert np.abs(got[i].astype(int) - ref.astype(int)).max() <= 1, repr(op)
    none = A.Pipeline([A.RandomEqualize(0.0), A.RandomInvert(0.0)], seed=0)(imgs)
    np.testing.assert_array_equal(none, imgs)


def test_single_image_op_probability():
    n = 20000
    prm = A.Pipeline([A.RandomInvert(0.3)], seed=2).sample_params((n, 2, 2, 3), indices=np.arange(n))[0]
    assert abs(prm["applied"].mean() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)  # 5 standard errors


def _torch_bins(space, num_bins, h, w):
    """torchvision's magnitude bins evaluated with torch (the float32 values it passes)."""
    torch = pytest.importorskip("torch")
    wide = space is A._WIDE_SPACE
    lin = {"ShearX": 0.99 if wide else 0.3, "ShearY": 0.99 if wide else 0.3, "Rotate": 135.0 if wide else 30.0,
           "Brightness": 0.99 if wide else 0.9, "Color": 0.99 if wide else 0.9, "Contrast": 0.99 if wide else 0.9,
           "Sharpness": 0.99 if wide else 0.9, "TranslateX": 32.0 if wide else 150.0 / 331.0 * w,
           "TranslateY": 32.0 if wide else 150.0 / 331.0 * h}  # fmt: skip
    out = {}
    for name in space:
        if name in lin:
            out[name] = torch.linspace(0.0, lin[name], num_bins).numpy().astype(np.float64)
        elif name == "Posterize":
            out[name] = (8 - (torch.arange(num_bins) / ((num_bins - 1) / (6 if wide else 4)))).round().int().numpy()
        elif name == "Solarize":
            out[name] = torch.linspace(1.0, 0.0, num_bins).numpy().astype(np.float64)
    return out


@pytest.mark.parametrize("space,nb", [("_WIDE_SPACE", 31), ("_RAND_SPACE", 31), ("_AUTO_SPACE", 10)])
def test_policy_magnitude_tables_are_torchvisions(space, nb):
    tbl = getattr(A, space)
    ref = _torch_bins(tbl, nb, 224, 200)
    for name, (fn, _) in tbl.items():
        bins = fn(nb, 224, 200)
        if name in ref:
            np.testing.assert_allclose(bins, ref[name], rtol=1e-6, atol=1e-6, err_msg=name)
        else:
            assert bins is None, name


def test_trivial_augment_frequencies_chi_square():
    """100,000 samples of TrivialAugmentWide: the 14 ops, the 31 bins and the signs of signed ops
    uniform (chi-square, significance 1e-3 each, fixed seed)."""
    stats = pytest.importorskip("scipy.stats")
    n = 100_000
    prm = A.Pipeline([A.TrivialAugmentWide()], seed=40).sample_params((n, 8, 8, 3), indices=np.arange(n))[0]
    ops, counts = np.unique(prm["op"][:, 0], return_counts=True)
    assert sorted(ops) == sorted(A._WIDE_SPACE) and stats.chisquare(counts).pvalue > 1e-3
    assert stats.chisquare(np.bincount(prm["bin"][:, 0], minlength=31)).pvalue > 1e-3
    signed = np.isin(prm["op"][:, 0], [k for k, (_, s) in A._WIDE_SPACE.items() if s]) & (prm["bin"][:, 0] > 0)
    neg = (prm["magnitude"][signed, 0] < 0).sum()
    assert stats.chisquare([neg, signed.sum() - neg]).pvalue > 1e-3
    # each op's magnitudes are its table's bins
    rot = prm["op"][:, 0] == "Rotate"
    np.testing.assert_allclose(np.abs(prm["magnitude"][rot, 0]), np.linspace(0, 135, 31)[prm["bin"][rot, 0]], rtol=1e-6)


def test_randaugment_frequencies_chi_square():
    """100,000 samples x 2 ops of RandAugment: the 14 ops uniform at every position, independent
    of each other (chi-square on the 14 x 14 table), the fixed magnitude; significance 1e-3."""
    stats = pytest.importorskip("scipy.stats")
    n = 100_000
    prm = A.Pipeline([A.RandAugment(2, 9)], seed=41).sample_params((n, 8, 8, 3), indices=np.arange(n))[0]
    names = list(A._RAND_SPACE)
    code = np.vectorize(names.index)(prm["op"])
    for k in range(2):
        assert stats.chisquare(np.bincount(code[:, k], minlength=14)).pvalue > 1e-3
    table = np.bincount(code[:, 0] * 14 + code[:, 1], minlength=196).reshape(14, 14)
    assert stats.chi2_contingency(table).pvalue > 1e-3
    rot = prm["op"] == "Rotate"
    np.testing.assert_allclose(np.abs(prm["magnitude"][rot]), np.float32(30.0 * 9 / 30), rtol=1e-6)


@pytest.mark.parametrize("policy", ["imagenet", "cifar10", "svhn"])
def test_autoaugment_frequencies_chi_square(policy):
    """100,000 samples: the 25 sub-policies uniform; within each, the four outcomes (which of the
    two ops applied) with torchvision's probabilities p1, p2 (independent); chi-square at
    significance 1e-3 (a sub-policy whose expected counts are all in one cell is checked exactly)."""
    stats = pytest.importorskip("scipy.stats")
    n = 100_000
    prm = A.Pipeline([A.AutoAugment(policy)], seed=42).sample_params((n, 32, 32, 3), indices=np.arange(n))[0]
    table = A.AUTOAUGMENT_POLICIES[policy]
    assert stats.chisquare(np.bincount(prm["policy"], minlength=25)).pvalue > 1e-3
    for j, ((n1, p1, _), (n2, p2, _)) in enumerate(table):
        sel = prm["policy"] == j
        ap = prm["applied"][sel]
        obs = np.bincount(ap[:, 0] * 2 + ap[:, 1], minlength=4)
        exp = sel.sum() * np.array([(1 - p1) * (1 - p2), (1 - p1) * p2, p1 * (1 - p2), p1 * p2])
        keep = exp > 0
        assert (obs[~keep] == 0).all()
        if keep.sum() > 1:
            assert stats.chisquare(obs[keep], exp[keep]).pvalue > 1e-3, (j, obs, exp)
        assert set(prm["op"][sel][ap[:, 0], 0]) <= {n1} and set(prm["op"][sel][ap[:, 1], 1]) <= {n2}


def _policy_pipe():
    return A.Pipeline([A.RandomResizedCrop((14, 13)), A.HorizontalFlip(), A.TrivialAugmentWide(),
                       A.RandAugment(2, 12), A.AutoAugment("cifar10"), A.Normalize(MEAN, STD),
                       A.RandomErasing(0.5)], seed=26, layout="NCHW")  # fmt: skip


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_policies_same_bits_whatever_the_batch_threads_and_path(dtype):
    imgs = BIG if dtype == np.uint8 else BIG.astype(np.float32) / 255
    pipe = _policy_pipe()
    whole = pipe(imgs, indices=BIG_IDX, epoch=3)
    parts = np.concatenate([pipe(imgs[:9], indices=BIG_IDX[:9], epoch=3), pipe(imgs[9:], indices=BIG_IDX[9:], epoch=3)])
    np.testing.assert_array_equal(parts, whole)
    for path in SIMD_PATHS:
        for threads in (1, 3):
            with simd_path(path), num_threads(threads):
                assert pipe(imgs, indices=BIG_IDX, epoch=3).tobytes() == whole.tobytes(), (path, threads)
    import ml_dtypes

    out8 = A.Pipeline([A.TrivialAugmentWide()], seed=1)(BIG)  # uint8 out, and bfloat16 via Normalize
    assert out8.dtype == np.uint8
    bf = A.Pipeline([A.TrivialAugmentWide(), A.Normalize(MEAN, STD, dtype=ml_dtypes.bfloat16)], seed=1)(BIG)
    f32 = A.Pipeline([A.TrivialAugmentWide(), A.Normalize(MEAN, STD)], seed=1)(BIG)
    np.testing.assert_array_equal(bf.view(np.uint16), f32.astype(ml_dtypes.bfloat16).view(np.uint16))


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: A.RandAugment(num_ops=-1), ValueError, "num_ops must be >= 0"),
        (lambda: A.RandAugment(magnitude=31), ValueError, "magnitude must be <= 30"),
        (lambda: A.RandAugment(magnitude=1.5), TypeError, "magnitude must be an int"),
        (lambda: A.RandAugment(num_magnitude_bins=1), ValueError, "num_magnitude_bins must be >= 2"),
        (lambda: A.TrivialAugmentWide(num_magnitude_bins="31"), TypeError, "num_magnitude_bins must be an int"),
        (lambda: A.TrivialAugmentWide(interpolation="bilinear"), ValueError, "interpolation must be 'nearest'"),
        (lambda: A.AutoAugment("coco"), ValueError, "policy must be one of"),
        (lambda: A.AutoAugment(fill=float("inf")), ValueError, "fill"),
        (lambda: A.RandomPosterize(9), ValueError, "bits must be <= 8"),
        (lambda: A.RandomPosterize(3, p=1.5), ValueError, r"p must be in \[0, 1\]"),
        (lambda: A.RandomSolarize(-1), ValueError, "threshold must be in"),
        (lambda: A.RandomAdjustSharpness(-0.5), ValueError, "sharpness_factor must be in"),
        (lambda: A.RandomEqualize("yes"), TypeError, "p must be"),
        (lambda: A.Pipeline([A.Normalize(MEAN, STD), A.TrivialAugmentWide()]), ValueError, r"ops\[1\].*before Normalize"),
        (lambda: A.Pipeline([A.TrivialAugmentWide()])(np.zeros((1, 4, 4, 4), np.uint8)), ValueError,
         "TrivialAugmentWide needs images with 1 or 3 channels"),
        (lambda: A.Pipeline([A.AutoAugment(fill=(1, 2))])(np.zeros((1, 4, 4, 3), np.uint8)), ValueError,
         "fill has 2 values but the images have 3 channels"),
    ],
)
def test_policy_arguments_name_the_argument(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_core_policy_step_checks_its_rows():
    x = np.zeros((1, 4, 4, 3), np.uint8)
    out = np.zeros((1, 4, 4, 3), np.uint8)
    good = np.zeros((1, 4), np.int32)
    fill3 = np.zeros(3, np.float32)
    idx = np.zeros(1, np.uint64)

    def run(row, slots=1.0):
        st = [("policy", {"per_sample": np.array([row], np.float32), "slots": slots, "bound": 255.0, "u8": True,
                          "fill": fill3})]  # fmt: skip
        _core.augment_run(x, out, False, False, good, None, None, None, good, None, None, None, fill3, st, 0, 0, idx)

    run([10, 0, 0, 0, 0, 0, 0, 0])
    assert (out == 255).all()  # invert
    with pytest.raises(ValueError, match="unknown policy op code"):
        run([11, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="posterize bits"):
        run([6, 9, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="must be finite"):
        run([1, np.nan, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="factors must be >= 0"):
        run([2, -1, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"slots must be a whole number"):
        run([0] * 8, slots=0.5)
    with pytest.raises(ValueError, match=r"per_sample must have shape \(1, 16\)"):
        run([0] * 8, slots=2.0)
