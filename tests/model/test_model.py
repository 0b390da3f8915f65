import json
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from vi_stream.errors import ConfigError, InputError, ModelError
from vi_stream.evaluation import synthetic
from vi_stream.evaluation.metrics import auroc
from vi_stream.model import AnomalyModel, ModelConfig, load, read_meta, save
from vi_stream.model.anomaly import raw_features, to_heatmap
from vi_stream.model.calibration import calibration_indices
from vi_stream.search import exact_nn_distance

from ..helpers import SMALL_CONFIG, SMALL_SHAPE

ONE_TILE = (SMALL_CONFIG.tile, SMALL_CONFIG.tile)


@pytest.fixture(scope="module")
def test_set():
    """Test images one tile in size: the exhaustive search's cost grows with the query patches, and one
    tile's 1600 are a quarter of a training image's (the bank stays every training patch)."""
    goods = [synthetic.module_image(ONE_TILE, seed=5000 + i) for i in range(5)]
    bads = [synthetic.module_image(ONE_TILE, seed=6000 + 10 * k + i, defects=(t,))
            for k, t in enumerate(synthetic.DEFECT_TYPES) for i in range(2)]
    return goods + bads


def test_quality_guard_against_exact_nearest_neighbour(good_images, test_set):
    """Small version of the README quality run: ours vs exhaustive NN over all training patches. The
    model is fitted on 6 of the session's good images with the session model's bank share (2 in 5
    patches kept): the exhaustive search's cost grows with the patches it keeps."""
    train = good_images[:6]
    model = AnomalyModel.fit(train, replace(SMALL_CONFIG, bank_size=16_000))
    cfg = model.config
    assert not calibration_indices(len(train), cfg)              # none out of fold: the bank has every image
    bank = np.concatenate([(raw_features(model.features, img, cfg, model.intensity).reshape(-1, 144) - model.mean)
                           @ model.components for img in train])
    assert len(bank) > model.index.bank.shape[0]  # the baseline sees every patch; we keep a sample
    y = np.array([s.mask.any() for s in test_set])
    ours, base, pix_y, pix_ours, pix_base = [], [], [], [], []
    for s in test_set:
        r = model.score(s.image)
        raw = raw_features(model.features, s.image, cfg, model.intensity)
        d = exact_nn_distance((raw.reshape(-1, 144) - model.mean) @ model.components, bank)
        heat = to_heatmap(d, raw.shape[:3], s.image.shape, cfg)
        ours.append(r.score)
        base.append(float(heat.max()))
        pix_y.append(s.mask[::2, ::2].ravel())
        pix_ours.append(r.heatmap[::2, ::2].ravel())
        pix_base.append(heat[::2, ::2].ravel())
    img_ours, img_base = auroc(y, ours), auroc(y, base)
    pix_ours_a = auroc(np.concatenate(pix_y), np.concatenate(pix_ours))
    pix_base_a = auroc(np.concatenate(pix_y), np.concatenate(pix_base))
    print(f"image AUROC ours {img_ours:.4f} exact-NN {img_base:.4f}; pixel ours {pix_ours_a:.4f} exact-NN {pix_base_a:.4f}")
    assert img_ours >= 0.95 and pix_ours_a >= 0.95
    assert img_ours >= img_base and pix_ours_a >= pix_base_a - 0.005


def test_scores_defects_and_masks(model):
    good = synthetic.module_image(SMALL_SHAPE, seed=7001)
    bad = synthetic.module_image(SMALL_SHAPE, seed=7002, defects=("dust",))
    rg, rb = model.score(good.image), model.score(bad.image)
    assert rg.heatmap.shape == SMALL_SHAPE and rg.heatmap.dtype == np.float32
    assert not rg.is_anomalous and not rg.mask.any() and rg.defects == []
    assert rb.is_anomalous and rb.score > rg.score
    assert rb.mask.dtype == np.uint8 and set(np.unique(rb.mask)) <= {0, 1}
    d = rb.defects[0]
    assert set(d) == {"bbox", "area", "peak", "centroid"}
    x, y, w, h = d["bbox"]
    # the strongest defect overlaps a true dust particle
    assert bad.mask[y:y + h, x:x + w].any()
    assert d["peak"] == pytest.approx(rb.score, rel=1e-5)
    assert {"backbone", "features", "search", "post", "tiling"} <= set(rb.timings)


def test_threshold_is_adjustable_without_refit(model):
    bad = synthetic.module_image(SMALL_SHAPE, seed=7002, defects=("dust",)).image
    r = model.score(bad)
    high = model.score(bad, threshold=r.score * 1.01)
    low = model.score(bad, threshold=model.threshold * 0.8)
    assert not high.is_anomalous and not high.mask.any()
    assert low.mask.sum() > r.mask.sum()
    assert np.array_equal(high.heatmap, r.heatmap)
    with pytest.raises(ConfigError):
        model.score(bad, threshold=-1.0)


def test_projected_head_equals_projecting_raw_features(model):
    tiles = np.random.default_rng(0).random((2, 64, 64), dtype=np.float32)
    taps = model.features.trunk_forward(model.features.to_tensor(tiles))
    raw = model.features.raw_head(taps).permute(0, 2, 3, 1).numpy()
    proj = model.features.head(taps).permute(0, 2, 3, 1).numpy()
    assert np.allclose((raw - model.mean) @ model.components, proj, atol=2e-3)


@pytest.mark.parametrize("taps, tile", [((2, 4, 7), 64), ((1, 2, 3, 7, 12), 96), ((2, 7), 80)])
def test_cpu_head_equals_torch_head(taps, tile):
    # The CPU path (numba projection of the NCHW taps, upsampling, 3x3 mean) against the
    # torch head: two taps at one stride, a stride-32 tap (96 px: upsampled 3 -> 12 cells, and
    # 6 -> 12 at stride 16), no stride-8 tap at all, 1x1 maps at 80 px / stride 32 (3 -> 10).
    from vi_stream.model.features import PatchFeatures

    rng = np.random.default_rng(1)
    feats = PatchFeatures("efficientnet-lite0", taps, channels=1)
    feats.set_projection(rng.standard_normal(feats.raw_dim).astype(np.float32),
                         rng.standard_normal((feats.raw_dim, 8)).astype(np.float32) * 0.1)
    tiles = rng.random((5, tile, tile), dtype=np.float32)
    want = torch.cat([feats.head(feats.trunk_forward(feats.to_tensor(tiles[i:i + 2]))) for i in (0, 2, 4)]).numpy()
    timings = {"backbone": 0.0, "features": 0.0}
    got = feats.projected_chunk(tiles, 2, timings)
    assert got.shape == want.shape == (5, 8, tile // 8, tile // 8)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-4)
    assert timings["backbone"] > 0 and timings["features"] > 0


@pytest.mark.parametrize("n, c, h, w, d, pool, accumulate", [
    (3, 24, 8, 8, 32, True, False),    # planes of 64 px: two full steps of the vector kernel
    (2, 40, 6, 6, 32, False, True),    # 36 px: one step and a tail of 4
    (2, 80, 5, 5, 7, False, False),    # 25 px: tail only; 7 outputs: a short last four
    (1, 5, 9, 8, 6, True, True),       # 72 px: two steps and a tail; short four; pooled
    (3, 3, 4, 8, 1, False, True),      # a single output channel
])
def test_tap_projection_kernel_equals_einsum(n, c, h, w, d, pool, accumulate):
    from vi_stream.model import aggregate

    rng = np.random.default_rng(n * 100 + c)
    tap = rng.standard_normal((n, c) + ((2 * h, 2 * w) if pool else (h, w))).astype(np.float32)
    weights = rng.standard_normal((d, c)).astype(np.float32)
    out = rng.standard_normal((n, d, h, w)).astype(np.float32)
    before = out.copy()
    aggregate.project(tap, aggregate.quad_weights(weights), out, accumulate, pool, 2)
    x = tap.reshape(n, c, h, 2, w, 2).mean((3, 5)) if pool else tap
    want = np.einsum("oc,nchw->nohw", weights, x) + (before if accumulate else 0)
    assert np.allclose(out, want, rtol=1e-5, atol=1e-5)


def test_input_errors(model):
    with pytest.raises(InputError, match="colour"):
        model.score(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="too small"):
        model.score(np.zeros((8, 64), np.uint8))
    with pytest.raises(InputError, match="unsupported"):
        model.score(np.zeros((64, 64), np.int64))
    with pytest.raises(InputError, match="shape"):
        model.score(np.zeros((4, 64, 64), np.uint8))
    holes = np.full((64, 64), 0.5, np.float32)
    holes[3, 4], holes[5, 6] = np.nan, np.inf
    with pytest.raises(InputError, match="2 pixel values that are not finite") as err:
        model.score(holes)
    assert err.value.reason == "not_finite"


def test_fit_needs_enough_images_and_consistent_channels():
    imgs = [synthetic.module_image((160, 160), seed=i).image for i in range(9)]
    with pytest.raises(InputError, match="at least 5 good images to fit .one per fold"):
        AnomalyModel.fit(imgs[:4], SMALL_CONFIG)
    with pytest.raises(InputError, match="at least 10 good images to fit .one in 5 is held out"):
        AnomalyModel.fit(imgs, replace(SMALL_CONFIG, calibration_folds=0))
    mixed = imgs[:3] + [synthetic.module_image((160, 160), seed=9, kind="rgb").image] * 3
    with pytest.raises(InputError, match="grey"):
        AnomalyModel.fit(mixed, SMALL_CONFIG)
    with pytest.raises(ConfigError):
        ModelConfig(tile=100).validate()


def test_fit_memory_is_bounded_by_the_bank_and_colour_uint16_work():
    cfg = ModelConfig(tile=128, overlap=32, bank_size=2000, cells=32, calibration_every=2)
    imgs = (synthetic.module_image((256, 256), seed=i, kind="grey16").image for i in range(6))
    m = AnomalyModel.fit(imgs, cfg)
    assert m.index.bank.shape[0] == 2000 and m.meta["training_patches"] > 2000
    assert m.intensity.hi == 4095.0  # 12-bit data detected
    rgb = AnomalyModel.fit([synthetic.module_image((192, 192), seed=i, kind="rgb").image for i in range(5)],
                           ModelConfig(tile=128, overlap=32, bank_size=1000, cells=16, calibration_every=2))
    r = rgb.score(synthetic.module_image((192, 192), seed=77, kind="rgb", defects=("stain",)).image)
    assert r.heatmap.shape == (192, 192) and rgb.channels == 3


def test_save_load_roundtrip_gives_identical_scores(model, model_path):
    img = synthetic.module_image(SMALL_SHAPE, seed=7003, defects=("scratch",)).image
    again = load(model_path)
    assert np.array_equal(again.score(img).heatmap, model.score(img).heatmap)
    meta = read_meta(model_path)
    for key in ("format_version", "backbone", "layers", "tile", "threshold", "training_digest", "created_at"):
        assert key in meta
    # readable without vi_stream
    raw = json.loads(np.load(model_path, allow_pickle=False)["meta"].tobytes())
    assert raw["model_id"] == model.model_id


def test_bad_model_files_get_clear_errors(model_path, tmp_path):
    data = open(model_path, "rb").read()
    cases = {
        "truncated.npz": data[: len(data) // 2],
        "garbage.npz": b"PK\x03\x04" + b"\x00" * 100,
        "text.npz": b"hello",
        "pickle.npz": pickle.dumps({"bank": [1, 2, 3]}),
        "torch.pt": b"",
    }
    torch.save({"a": torch.zeros(2)}, str(tmp_path / "torch.pt"))
    for name, content in cases.items():
        p = tmp_path / name
        if content:
            p.write_bytes(content)
        with pytest.raises(ModelError) as err:
            load(str(p))
        assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="pickle"):
        load(str(tmp_path / "pickle.npz"))
    with pytest.raises(ModelError, match="not found"):
        load(str(tmp_path / "missing.npz"))
    # another format version
    z = dict(np.load(model_path, allow_pickle=False))
    meta = json.loads(z["meta"].tobytes())
    meta["format_version"] = 99
    z["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(tmp_path / "v99.npz", **z)
    with pytest.raises(ModelError, match="version 99"):
        load(str(tmp_path / "v99.npz"))
    # an npz that holds a pickled object array
    np.savez(tmp_path / "objects.npz", meta=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ModelError):
        load(str(tmp_path / "objects.npz"))


def test_save_is_atomic(model, tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    save(model, str(path))
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        save(model, str(path))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


HELD_OUT_GUARD = ("hairline", "particles", "smear", "pit", "oxidation", "bubble", "trace_break")


def test_quality_guard_on_held_out_families():
    """Small version of bench/generalise.py: a model fitted on good modules of a varied line
    scores defects of the families no design choice was tuned on, drawn at medium contrast.
    At this size pits and trace breaks are near the limit (trace_break is missed by anomalib's
    PatchCore too). The bars sit a little below what the model reads here (AUROC 0.89, recall
    0.79, 1 false alarm in 8): a guard against breakage. It is too small to tell design choices
    apart (32 dimensions read 0.87 / 0.71 / 0 here); that is bench/generalise.py's job."""
    line = synthetic.Variation.draw(7)
    shape = (512, 512)
    # one in two held out: 12 calibration images make the threshold's estimate steady enough
    model = AnomalyModel.fit((synthetic.module_image(shape, 10_000 + i, variation=line).image for i in range(24)),
                             ModelConfig(bank_size=40_000, cells=256, calibration_every=2))
    goods = [model.score(synthetic.module_image(shape, 20_000 + i, variation=line).image).score for i in range(8)]
    bads = [model.score(synthetic.module_image(shape, 30_000 + 100 * k + i, (fam,), contrast=0.6,
                                               variation=line).image).score
            for k, fam in enumerate(HELD_OUT_GUARD) for i in range(2)]
    y = np.r_[np.zeros(len(goods)), np.ones(len(bads))]
    image_auroc = auroc(y, np.r_[goods, bads])
    recall = float(np.mean(np.array(bads) > model.threshold))
    false_alarms = int(np.sum(np.array(goods) > model.threshold))
    print(f"held-out guard: image AUROC {image_auroc:.4f}, recall {recall:.2f}, false alarms {false_alarms}/8")
    assert image_auroc >= 0.85 and recall >= 0.6 and false_alarms <= 2


def _rewrite_meta(path, dst, edit):
    from vi_stream.model.filecheck import digest_member
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    edit(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    arrays["digest"] = digest_member(arrays)      # as that vi_stream's save sealed it
    np.savez(dst, **arrays)
    return str(dst)


def test_model_files_from_before_the_calibrated_threshold_still_load(model, model_path, tmp_path):
    """A file written before false_alarm_one_in existed (no threshold rule, a padded threshold)
    loads with its own dimensions and threshold; a file from a newer version is refused clearly."""
    def older(meta):
        meta["config"].pop("false_alarm_one_in")
        meta.pop("threshold_rule")
        meta["threshold"] = 33.0
    old = load(_rewrite_meta(model_path, tmp_path / "old.npz", older))
    assert old.threshold == 33.0 and old.config.dim == model.config.dim
    img = synthetic.module_image(SMALL_SHAPE, seed=7002, defects=("dust",)).image
    assert np.array_equal(old.score(img).heatmap, model.score(img).heatmap)

    def newer(meta):
        meta["config"]["sharpness"] = 3
    with pytest.raises(ModelError, match="newer vi_stream.*sharpness.*upgrade vi_stream or refit"):
        load(_rewrite_meta(model_path, tmp_path / "new.npz", newer))
