"""Training our DDPM, saving and reloading it, the hub path and the model/data checks."""

import os
import subprocess
import sys

import pytest
import torch
from diffusers import DDPMPipeline, UNet2DModel

from fakes import write_tiny_pipeline
from hls.errors import ArgumentError
from hls.models import check_compatible, load_sampler, load_scheduler_config, load_unet
from hls.train import make_unet, train, training_scheduler


def test_train_tiny_then_reload_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    unet = make_unet(8, 1, block_out_channels=[8, 16], layers_per_block=1, attention=[False, True],
                     norm_num_groups=4)
    x = torch.rand(40, 1, 8, 8) * 2 - 1
    ema, log, snapshots = train(unet, training_scheduler(), x, steps=6, batch_size=16, lr=1e-3, warmup=1,
                                ema_decay=0.9, seed=0, snapshot_steps=(3,), log_every=2, progress=False)
    assert [row[0] for row in log] == [2, 4, 6] and all(torch.isfinite(torch.tensor(row[2])) for row in log)
    assert log[-1][1] == pytest.approx(6 * 16 / 40)  # epochs seen
    assert set(snapshots) == {3}
    assert not torch.equal(ema.conv_in.weight, unet.conv_in.weight)  # the EMA, not the raw weights
    DDPMPipeline(unet=ema, scheduler=training_scheduler()).save_pretrained(tmp_path / "model")
    reloaded, scheduler_config = load_unet(str(tmp_path / "model")), load_scheduler_config(str(tmp_path / "model"))
    probe, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 900])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(probe, t).sample, ema(probe, t).sample)
    assert scheduler_config["beta_end"] == 0.02 and scheduler_config["prediction_type"] == "epsilon"


def test_training_is_seeded():
    def once():
        torch.manual_seed(1)
        unet = make_unet(8, 1, [8, 16], 1, [False, False], norm_num_groups=4)
        x = torch.rand(20, 1, 8, 8) * 2 - 1
        return train(unet, training_scheduler(), x, steps=3, batch_size=8, lr=1e-3, warmup=0, ema_decay=0.9, seed=5,
                     progress=False)[1]

    assert once() == once()


def test_unet_arguments_are_checked():
    with pytest.raises(ArgumentError, match="attention = \\[False\\]: needs one flag per level"):
        make_unet(8, 1, [8, 16], 1, [False])
    with pytest.raises(ArgumentError, match="block_out_channels = \\[\\]: must be a non-empty list"):
        make_unet(8, 1, [], 1, [])


def test_local_pipeline_folder_loads_in_float32_quietly(tmp_path, capfd):
    written = write_tiny_pipeline(tmp_path / "tiny", image_size=8)
    written.half().save_pretrained(tmp_path / "tiny" / "unet")  # an fp16 snapshot loads as float32
    capfd.readouterr()
    unet = load_unet(str(tmp_path / "tiny"))
    assert isinstance(unet, UNet2DModel) and unet.dtype == torch.float32 and not unet.training
    assert load_scheduler_config(str(tmp_path / "tiny"))["_class_name"] == "DDPMScheduler"
    assert capfd.readouterr().err == ""


def test_hub_id_offline_names_the_id_and_the_network():
    code = "from hls.models import load_scheduler_config\nload_scheduler_config('hls-tests/no-such-model')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode != 0
    assert "source = 'hls-tests/no-such-model': is not a local folder" in out.stderr
    assert "needs network access" in out.stderr


def test_a_folder_that_is_no_pipeline_is_a_clear_error(tmp_path):
    for load in (load_unet, load_scheduler_config):
        with pytest.raises(ArgumentError, match="is not a diffusers pipeline folder"):
            load(str(tmp_path))


def test_model_and_data_mismatch_names_the_shapes(tmp_path):
    unet = write_tiny_pipeline(tmp_path / "tiny", image_size=8)
    check_compatible(unet, (8, 8, 1))
    with pytest.raises(ArgumentError, match=r"image_shape = \(32, 32, 3\): the model expects 1-channel 8x8 images"):
        check_compatible(unet, (32, 32, 3))


def test_load_sampler_checks_steps_before_reading_weights(tmp_path):
    write_tiny_pipeline(tmp_path / "tiny", image_size=8)
    (tmp_path / "tiny/unet/diffusion_pytorch_model.safetensors").unlink()  # any weight read would fail
    with pytest.raises(ArgumentError, match="steps = 2000: must be <= 1000"):
        load_sampler(str(tmp_path / "tiny"), "ddim", (8, 8, 1), 2000)
    with pytest.raises(ArgumentError, match="name = 'plms': must be one of"):
        load_sampler(str(tmp_path / "tiny"), "plms", (8, 8, 1), 10)
    write_tiny_pipeline(tmp_path / "tiny", image_size=8)
    unet, scheduler = load_sampler(str(tmp_path / "tiny"), "euler", (8, 8, 1), 10)
    assert type(scheduler).__name__ == "EulerDiscreteScheduler" and unet.config.sample_size == 8
