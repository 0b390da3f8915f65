"""Issue 18's whole loop: fit -> register -> promote -> verify tiles -> retrain -> gate -> promote
between frames -> roll back; the gate's refusals; shadow mode. On every store backend."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vi_stream import Client
from vi_stream.errors import ConfigError, StateError
from vi_stream.evaluation import synthetic
from vi_stream.registry.retrain import freeze_gate, promote, verified_tiles
from vi_stream.registry.versions import Registry

from ..helpers import SMALL_SHAPE
from ..helpers.daemon import bound_push, running_daemon, wait_for
from ..helpers.modelfiles import file_bytes, meta_change, rewrite_model
from ..helpers.rest import frame

GOOD = synthetic.module_image(SMALL_SHAPE, seed=9700)
DEFECT = synthetic.module_image(SMALL_SHAPE, seed=9701, defects=("scratch",))


@pytest.fixture(scope="module")
def training_dir(good_images, tmp_path_factory) -> str:
    """The session model's own training images, as a folder (what a site keeps beside its model)."""
    d = tmp_path_factory.mktemp("train")
    for i, img in enumerate(good_images):
        cv2.imwrite(str(d / f"good_{i:03d}.png"), img)
    return str(d)


def _version_of(client: Client, module: str, side: str) -> str:
    return client.get_module(module)[side]["model_version"]


def _send(push, d, client, pulse: int, image, module: str, side: str) -> None:
    n = d.writer.statistics()["stored"]
    push.send_multipart(frame(pulse, image, module, side))
    wait_for(lambda: d.writer.statistics()["stored"] > n, timeout=60)


def _review(client: Client, module: str, side: str, mask: np.ndarray) -> None:
    """An operator's verdict on the side's one tile: the true mask (empty for a good tile)."""
    rid = client.get_module(module)[side]["result_id"]
    client.correct_mask(module, side, 0, (mask > 0).astype(np.uint8) * 255, result_id=rid)


def test_fit_register_promote_review_retrain_gate_promote_between_frames_and_roll_back(
        store, model_path, training_dir):
    reg = Registry(store)
    reg.register(file_bytes(model_path), "pads", "1.0", by="fit")
    reg.promote("production", "pads", "1.0", "first model")
    with bound_push() as (push, port), \
            running_daemon(None, port, backend=store, model_alias="production", model_poll=60.0) as (d, _):
        c = Client(f"http://127.0.0.1:{d.rest_port}", timeout=60)
        c.start()
        _send(push, d, c, 1, GOOD.image, "M1", "left")
        _send(push, d, c, 2, DEFECT.image, "M1", "right")
        _send(push, d, c, 3, GOOD.image, "M2", "left")
        assert {_version_of(c, m, s) for m, s in (("M1", "left"), ("M1", "right"), ("M2", "left"))} == {"pads@1.0"}
        # operators review: two good tiles, one defect tile with its true mask
        _review(c, "M1", "left", np.zeros(SMALL_SHAPE))
        _review(c, "M1", "right", DEFECT.mask)
        _review(c, "M2", "left", np.zeros(SMALL_SHAPE))
        assert sorted(t["label"] for t in verified_tiles(store)) == ["defect", "good", "good"]
        gate = c.freeze_gate()
        assert (gate["defect_tiles"], gate["good_tiles"]) == (1, 2)
        # retrain in the daemon, in the background, while it keeps processing
        job = c.retrain(training_dir)
        assert job["state"] == "running"
        with pytest.raises(StateError, match="running already"):
            c.retrain(training_dir)
        _send(push, d, c, 4, GOOD.image, "M3", "left")          # processing goes on meanwhile
        done = wait_for(lambda: (j := c.retrain_status())["state"] != "running" and j, timeout=300)
        assert done["state"] == "done" and done["version"] == "pads@1.1", done
        v11 = c.get_model_version("pads", "1.1")
        meta = v11["metadata"]["retrained_from"]
        assert meta["version"] == "pads@1.0" and meta["verified_good_tiles"] == 2
        assert meta["folder_is_base_training_set"] is True
        md = v11["metadata"]                  # the tiles join the bank; the folder's images alone set the threshold
        assert md["good_images"] == meta["folder_images"] + 2 == md["training_images"]
        assert md["calibration_images"] == meta["folder_images"] == len(md["calibration_scores"])
        assert v11["aliases"] == ["candidate"] and gate["id"] in v11["gate"]
        # promote 1.1 between two frames: the gate compares it with 1.0 on the frozen tiles
        change = c.promote("production", "pads", "1.1", "retrained on reviewed tiles", expected="pads@1.0")
        assert change["gate"]["gate_set"] == gate["id"] and change["gate"]["regressions"] == []
        _send(push, d, c, 5, GOOD.image, "M3", "right")
        assert (_version_of(c, "M3", "left"), _version_of(c, "M3", "right")) == ("pads@1.0", "pads@1.1")
        c.rollback("production", "operators prefer 1.0")
        _send(push, d, c, 6, GOOD.image, "M4", "left")
        assert _version_of(c, "M4", "left") == "pads@1.0"
        stats = c.get_statistics()
        assert stats["frames_processed"] == 6 and not stats["frames_rejected"]      # no frame lost
        assert sum(r["model_version"] == "pads@1.1" for r in c.history()[0]) == 1


def test_the_gate_refuses_a_regression_unless_forced_and_records_it(store, model_path, tmp_path, monkeypatch):
    reg = Registry(store)
    reg.register(file_bytes(model_path), "pads", "1.0")
    blind = rewrite_model(model_path, str(tmp_path / "blind.npz"), meta_change(lambda m: m.update(threshold=1e6)))
    reg.register(file_bytes(blind), "pads", "1.1")          # never flags anything: recall 0
    reg.promote("production", "pads", "1.0", "first")
    with pytest.raises(StateError, match="a gate needs verified defect tiles"):
        freeze_gate(store)
    # a hand-made review: one defect side and one good side, each one verified tile
    import vi_stream.store.record as rec
    from vi_stream.frame import Frame, Result
    from vi_stream.model import load
    m = load(model_path)
    for pulse, (img, truth, side) in enumerate(((DEFECT.image, DEFECT.mask, "left"), (GOOD.image, None, "right"))):
        r = m.score(img)
        f = Frame(img, pulse, sec=1_700_000_000 + pulse, module="GATE", side=side)
        res = Result(f, img, r.heatmap, r.mask, r.score, r.is_anomalous, r.defects, {"threshold": r.threshold}, {})
        record = rec.build(res, "CAM", tile=512)
        store.write([record])
        tile_mask = np.zeros(SMALL_SHAPE, np.uint8) if truth is None else (truth > 0).astype(np.uint8) * 255
        new, images = rec.correction(record.side, 0, tile_mask, tile_mask)
        store.put_images(images)
        assert store.set_side("GATE", side, new, record.id)
    gate = freeze_gate(store, by="alice")
    with pytest.raises(StateError, match=r"does worse than pads@1.0 .*recall 0.000 < 1.000"):
        promote(reg, "production", "pads", "1.1", "looks fine")
    assert reg.resolve("production")["version"] == "1.0"
    forced = promote(reg, "production", "pads", "1.1", "accepted: line 3 needs fewer alarms", force=True)
    assert forced["gate"]["forced"] is True and forced["gate"]["regressions"]
    assert reg.changes("production")[0]["gate"]["forced"] is True
    assert reg.version("pads", "1.1")["gate"][gate["id"]]["recall"] == 0.0      # kept with the version
    promote(reg, "staging", "pads", "1.1", "no gate on other aliases")
    # A move by someone else while the gate is judged: the gate compared against what the alias showed
    # (1.1, as blind as the candidate), so the promotion must not land on what it shows now (1.0).
    blind2 = rewrite_model(model_path, str(tmp_path / "blind2.npz"), meta_change(lambda m: m.update(threshold=2e6)))
    reg.register(file_bytes(blind2), "pads", "1.2")
    from vi_stream.registry import retrain as retrain_mod
    judged = retrain_mod.gate_metrics

    def judged_while_bob_rolls_back(registry, doc, gate, *args, **kw):
        if doc["version"] == "1.2" and reg.resolve("production")["version"] == "1.1":
            Registry(store).promote("production", "pads", "1.0", "bob: back to the one that finds defects")
        return judged(registry, doc, gate, *args, **kw)
    monkeypatch.setattr(retrain_mod, "gate_metrics", judged_while_bob_rolls_back)
    with pytest.raises(StateError, match="points at pads@1.0, not pads@1.1"):
        promote(reg, "production", "pads", "1.2", "alice: as good as production")
    assert reg.resolve("production")["version"] == "1.0"


def test_shadow_mode_scores_beside_production_and_keeps_the_disagreements(tmp_path, model_path):
    from vi_stream.store.local import LocalStore
    eager = rewrite_model(model_path, str(tmp_path / "eager.npz"), meta_change(lambda m: m.update(threshold=1e-6)))
    with LocalStore(str(tmp_path / "store")) as store:
        reg = Registry(store)
        reg.register(file_bytes(model_path), "pads", "1.0")
        reg.register(file_bytes(eager), "pads", "1.1")          # flags everything
        reg.promote("production", "pads", "1.0", "first")
        reg.promote("candidate", "pads", "1.1", "try it")
        with bound_push() as (push, port), running_daemon(None, port, backend=store, model_alias="production",
                                                          shadow_alias="candidate", shadow_every=1) as (d, _):
            c = Client(f"http://127.0.0.1:{d.rest_port}", timeout=30)
            c.start()
            for i in range(3):   # one at a time: a frame that comes while the shadow is busy is skipped
                _send(push, d, c, 10 + i, GOOD.image, f"S{i}", "left")
                s = wait_for(lambda: (x := c.shadow())["compared"] >= i + 1 and x, timeout=60)
            assert s["skipped_busy"] == 0
            assert s["candidate"] == "pads@1.1" and s["agreement"] == 0.0 and s["only_candidate_anomalous"] == 3
            assert len(s["stored_disagreements"]) == 3
            dis = s["stored_disagreements"][0]
            assert dis["production"]["version"] == "pads@1.0" and dis["candidate"]["is_anomalous"] is True
            assert all(not c.get_module(f"S{i}")["left"]["is_anomalous"] for i in range(3))   # verdicts unchanged
            assert c.get_statistics()["shadow"]["compared"] >= 3


def test_a_shadow_disagreement_is_stored_before_the_status_counts_it():
    """/shadow's counts and its stored disagreements agree at every moment (the counts were raised
    first, and a status read between the two listed one disagreement fewer than it counted)."""
    from types import SimpleNamespace
    from vi_stream.registry.shadow import ShadowWatch

    class Records:
        seen_at_put: list[int] = []

        def put_shadow(self, doc):
            self.seen_at_put.append(watch.status()["compared"])

    watch = ShadowWatch(every=1, prefix="vi", records=Records())
    candidate = SimpleNamespace(score=lambda image: SimpleNamespace(score=2.0, threshold=1.0, is_anomalous=True))
    watch.set_model(candidate, {"name": "pads", "version": "1.1"})
    frame_ = SimpleNamespace(pulse_id=7, module="M", side="left", sec=1, ns=0)
    result = SimpleNamespace(image=GOOD.image, frame=frame_, parameters={"model_version": "pads@1.0", "threshold": 1.0},
                             score=0.5, is_anomalous=False)
    watch.compare(result)
    assert Records.seen_at_put == [0] and watch.status()["compared"] == 1


def test_retrain_refuses_what_it_cannot_do(store, model_path, training_dir, tmp_path):
    from vi_stream.registry.retrain import retrain
    reg = Registry(store)
    with pytest.raises(Exception, match="promote one first"):
        retrain(reg, training_dir)
    reg.register(file_bytes(model_path), "pads", "1.0")
    reg.promote("production", "pads", "1.0", "first")
    with pytest.raises(ConfigError, match="not a folder"):
        retrain(reg, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="staging alias"):
        retrain(reg, training_dir, to_alias="production")
