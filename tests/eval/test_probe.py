"""`python -m camclone_jax.eval.probe`: one-step denoising scores of the shipped model under four conditionings.

The summary is recomputed from the per-triple scores, the MSE is checked on known estimates, and the probe's
conditionings are checked to be what their names say (static reference = first frame repeated, I2V = content
latents zeroed) by comparing its scores with direct DiT calls.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camclone_jax.eval import probe
from camclone_jax.eval.heldout import select_triples
from camclone_jax.sample.checkpoints import CheckpointPaths, load_models
from camclone_jax.sample.conditions import encode_text, encode_video
from camclone_jax.sample.demo import ASSETS
from camclone_jax.sample.tasks import Inputs, task_conditions
from camclone_jax.sample.video import read_video


def test_frame_mse_skips_the_first_latent_frame():
    x0 = np.zeros((1, 3, 2, 2, 4), np.float32)
    estimate = x0.copy()
    estimate[:, 0] = 100.0  # the first frame is given by the image condition: not scored
    assert probe.frame_mse(estimate, x0) == 0.0
    estimate[:, 2] = 2.0
    assert probe.frame_mse(estimate, x0) == pytest.approx(2.0)  # (0 + 4) / 2 frames


def test_summary_gains_per_trajectory_kind():
    def row(kind, v2v, static):
        return {"trajectory": kind, "channel_mean": 1.0,
                "mse": {"0.9": {"v2v": v2v, "v2v_static": static, "i2v": v2v, "i2v_static": static}}}

    rows = [row("tilt", 0.5, 1.0), row("tilt", 0.7, 1.0), row("pan", 1.0, 1.0)]
    summary = probe.summarise(rows, (0.9,))
    assert summary["by_trajectory"] == {"pan": {"triples": 1, "0.9": 0.0},
                                        "tilt": {"triples": 2, "0.9": pytest.approx(0.4)}}
    assert summary["0.9"]["reference_gain_v2v"] == pytest.approx(1 - 2.2 / 3.0)
    table = probe.format_table(summary, (0.9,))
    assert "| pan | 1 | +0.0% |" in table and "| tilt | 2 | +40.0% |" in table


def test_cli_scores_and_gains(dataset, tmp_path, capsys):
    out = tmp_path / "probe.json"
    assert probe.main(["--models", str(ASSETS), "--data", str(dataset), "--num", "1", "--sigmas", "0.5", "0.9",
                       "--out", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert [r["row"] for r in report["rows"]] == [t.row for t in select_triples(dataset, "test", 1)]
    for sigma in ("0.5", "0.9"):
        s = report["summary"][sigma]
        for name in probe.CONDITIONINGS:
            assert s[name] == pytest.approx(np.mean([r["mse"][sigma][name] for r in report["rows"]]))
        assert s["reference_gain_v2v"] == pytest.approx(1 - s["v2v"] / s["v2v_static"])
        assert s["content_gain"] == pytest.approx(1 - s["v2v"] / s["i2v"])
    # One triple: its trajectory kind's gain is the whole set's.
    kind = json.loads(select_triples(dataset, "test", 1)[0].target_cameras.read_text())["trajectory"]["kind"]
    assert report["rows"][0]["trajectory"] == kind
    by_kind = report["summary"]["by_trajectory"]
    assert list(by_kind) == [kind] and by_kind[kind]["triples"] == 1
    assert by_kind[kind]["0.9"] == pytest.approx(report["summary"]["0.9"]["reference_gain_v2v"])
    printed = capsys.readouterr().out
    assert "reference gain V2V" in printed and "| 0.9 |" in printed and f"| {kind} | 1 |" in printed

    # The I2V, static-reference score of the first triple at σ = 0.9, from a direct DiT call.
    models = load_models("camclone", CheckpointPaths.resolve(ASSETS), attention="xla")
    t = select_triples(dataset, "test", 1)[0]
    ref, content, target = (read_video(p, num_frames=9, height=64, width=96) for p in (t.ref, t.content, t.target))
    cond = task_conditions(models, "camclone", Inputs(t.caption, ref_video=np.repeat(ref[:1], 9, 0),
                                                      image=content[0]), 9, 64, 96, False, False)
    assert float(jnp.abs(cond["cond_latents"][:, 3:]).max()) == 0.0  # content half zeroed
    x0 = encode_video(models.vae, jnp.asarray(target)[None], tiled=False)
    noise = jax.random.normal(jax.random.key(t.row), x0.shape, jnp.float32)
    noisy = 0.1 * x0 + 0.9 * noise
    text = encode_text(models.text_encoder, models.tokenizer, [t.caption])
    v = models.dit(noisy, jnp.full((1,), 900.0), text, **cond)
    assert report["rows"][0]["mse"]["0.9"]["i2v_static"] == pytest.approx(probe.frame_mse(noisy - 0.9 * v, x0),
                                                                          rel=1e-4)


def test_bad_sigmas_are_refused(dataset, capsys):
    assert probe.main(["--models", str(ASSETS), "--data", str(dataset), "--sigmas", "1.5"]) == 2
    assert "--sigmas must lie in (0, 1]" in capsys.readouterr().err
