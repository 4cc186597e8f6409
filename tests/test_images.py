"""Image flows: logit and squeeze, the multiscale flow, bits/dim, training and evaluate."""

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli
from torch import nn

from toflow import build_flow
from toflow.config import load_config
from toflow.data import DataError, bits_per_dim, load_images, make_source
from toflow.data.images import MNIST_FILES
from toflow.models import CNF, ConcatConvNet, EndTime, LogitTransform, MultiscaleFlow, squeeze, unsqueeze
from toflow.solvers import Dopri5


def test_logit_log_det_matches_the_autograd_jacobian():
    logit = LogitTransform(0.05).double()
    x = torch.rand(1, 1, 2, 3, dtype=torch.float64)
    _, log_det = logit(x)
    J = torch.autograd.functional.jacobian(lambda v: logit(v.reshape(1, 1, 2, 3))[0].flatten(), x.flatten())
    assert torch.allclose(log_det, torch.logdet(J)[None], atol=1e-10)
    y, _ = logit(x)
    assert torch.allclose(logit.inverse(y), x, atol=1e-12)


def test_squeeze_and_unsqueeze_are_inverses():
    x = torch.randn(2, 3, 8, 6)
    s = squeeze(x)
    assert s.shape == (2, 12, 4, 3)
    assert torch.equal(unsqueeze(s), x)
    assert torch.equal(s[0, :4, 0, 0], x[0, 0, :2, :2].flatten())  # a 2x2 patch becomes 4 channels


def small_multiscale(shape, hidden=(8,), tol=1e-7):
    def make_block(block_shape):
        torch.manual_seed(len(block_shape) + block_shape[0])
        return CNF(ConcatConvNet(block_shape[0], hidden), EndTime(0.0, 0.5, "toflow"), Dopri5(atol=tol, rtol=tol),
                   trace="hutchinson", event_shape=block_shape)

    return MultiscaleFlow(shape, make_block, num_blocks=1, logit_alpha=1e-6).double()


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8)])
def test_multiscale_encode_then_decode(shape):
    flow = small_multiscale(shape)
    flow.eval()
    x = torch.rand(3, *shape, dtype=torch.float64) * 0.9 + 0.05
    with torch.no_grad():
        z, log_det = flow(x)
        back = flow.inverse(z)
        logp = flow.log_prob(x)
    assert z.shape == (3, math.prod(shape))
    assert (back - x).abs().max() < 1e-3
    assert torch.isfinite(logp).all()
    assert len(flow.blocks()) == 3 and sum(c * h * w for c, h, w in flow.latent_shapes) == math.prod(shape)


class ZeroField(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, t, z):
        return self.w * z  # f = 0: the CNF blocks are the identity


def test_bits_per_dim_by_hand():
    alpha = 0.05
    flow = MultiscaleFlow((1, 4, 4), lambda s: CNF(ZeroField(s[0]), EndTime(0.0, 1.0, "fixed"), Dopri5(),
                                                   trace="exact" if math.prod(s) <= 16 else "hutchinson",
                                                   event_shape=s), logit_alpha=alpha).double()
    values = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4) * 17  # 0, 17, ..., 255
    x = (values + 0.5) / 256  # dequantised with u = 1/2
    with torch.no_grad():
        logp = float(flow.log_prob(x))
    # by hand: y = logit(s), s = alpha + (1 - 2 alpha) x; log p(x) = log N(y) + sum log|dy/dx|
    s = alpha + (1 - 2 * alpha) * ((np.arange(16) * 17 + 0.5) / 256)
    y = np.log(s) - np.log(1 - s)
    by_hand = float(np.sum(-0.5 * y**2 - 0.5 * np.log(2 * np.pi)) + np.sum(np.log(1 - 2 * alpha) - np.log(s * (1 - s))))
    assert logp == pytest.approx(by_hand, abs=1e-8)
    expected_bpd = (-by_hand / 16 + np.log(256)) / np.log(2)
    assert float(bits_per_dim(-logp, 16, 256)) == pytest.approx(expected_bpd, abs=1e-10)


def test_a_multiscale_flow_adds_up_its_blocks_regularisers():
    from toflow.regularizers import KineticEnergy

    def block(shape):
        return CNF(ConcatConvNet(shape[0], (8,)), EndTime(0.0, 0.5), Dopri5(atol=1e-4, rtol=1e-4),
                   regularizers=[KineticEnergy(1.0)], trace="hutchinson", event_shape=shape)

    flow = MultiscaleFlow((1, 4, 4), block).double()  # 4x4: one scale of one block
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64) * 0.9 + 0.05
    torch.manual_seed(1)
    out = flow.transform(x)
    assert set(out.regularization) == {"kinetic"} and out.regularization["kinetic"].shape == (3,)
    torch.manual_seed(1)  # the same probe: the block alone, on what it sees
    block, = flow.blocks()
    assert torch.equal(out.regularization["kinetic"], block.transform(flow.prepare(x)).regularization["kinetic"])


def test_flow_matching_trains_a_single_scale_image_flow_in_logit_space():
    from toflow.objectives import FlowMatching

    flow = MultiscaleFlow((1, 4, 4), lambda s: CNF(ConcatConvNet(s[0], (8,)), EndTime(0.0, 0.5), event_shape=s),
                          n_scales=1).double()
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64) * 0.9 + 0.05
    assert torch.equal(flow.prepare(x), flow.logit(x)[0])
    loss, parts = FlowMatching()(flow, x)
    loss.backward()
    assert torch.isfinite(loss) and parts == {"fm_mse": loss}
    assert all(p.grad is not None for p in flow.blocks()[0].field.parameters())


@pytest.mark.parametrize("shape,blocks", [((1, 8, 8), 3), ((1, 4, 4), 1)], ids=["two scales", "one block"])
def test_an_image_flow_animates_into_a_gif_of_sample_grids(shape, blocks, tmp_path: Path):
    from PIL import Image

    from toflow.trainers.animation import animate

    flow = small_multiscale(shape, tol=1e-3).float()
    assert len(flow.blocks()) == blocks  # one block: a flat latent like a 2-D flow's, yet images
    shots = animate(flow, tmp_path / "flow.gif", k=2, title="images")
    assert [shot.density for shot in shots] == [None, None]
    assert [shot.particles.shape for shot in shots] == [(64, *shape)] * 2  # an 8x8 grid of samples a frame
    assert Image.open(tmp_path / "flow.gif").n_frames == 2


def test_ffjord_parameter_counts():
    # the source: the paper's Table 1 (Param), FFJORD's multiscale flow with 400K parameters on MNIST and
    # 670K on CIFAR-10, rounded there; toflow's build has 400,323 and 679,441 (1.4% above the 670K)
    for name, reported, within in (("mnist", 400_000, 0.005), ("cifar10", 670_000, 0.015)):
        cfg = load_config(None, [f"data.name={name}", "model.activation=softplus"])
        count = sum(p.numel() for p in build_flow(cfg).parameters())
        assert abs(count - reported) <= within * reported, (name, count)


def test_missing_data_is_one_line_naming_the_files(tmp_path: Path):
    with pytest.raises(DataError) as info:
        load_images("mnist", tmp_path, download=False)
    message = str(info.value)
    assert "\n" not in message and "train-images-idx3-ubyte" in message and str(tmp_path) in message


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_a_download_that_cannot_reach_the_network_says_so_and_leaves_nothing(name, tmp_path: Path, monkeypatch):
    # every address through a proxy that cannot answer: the network is unreachable for real
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    monkeypatch.setattr("toflow.data.images.DEBIAN_FASHION", tmp_path / "no-debian")  # no local copy either
    with pytest.raises(DataError) as info:
        load_images(name, tmp_path / "data")
    message = str(info.value)
    assert "\n" not in message and "the download from http" in message and "data.download=false" in message
    assert [p.name for p in (tmp_path / "data").iterdir()] == []  # no partial file to be taken for data


def _gzipped_mnist(fake_mnist: Path) -> Path:
    """fake_mnist's files gzipped, as they are downloaded or shipped by Debian."""
    import gzip
    import shutil

    raw = fake_mnist / "MNIST" / "raw"
    for f in list(raw.iterdir()):
        with open(f, "rb") as src, gzip.open(f"{f}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        f.unlink()
    return raw


def test_gzipped_files_are_unpacked_once_and_read(fake_mnist: Path):
    raw = _gzipped_mnist(fake_mnist)
    images = load_images("mnist", fake_mnist, train=True)
    assert images.shape == (48, 1, 28, 28)
    assert sorted(p.name for p in raw.iterdir() if not p.name.endswith(".gz")) == sorted(MNIST_FILES)
    assert torch.equal(load_images("mnist", fake_mnist, train=True), images)


def test_a_gzip_file_cut_short_is_one_line(fake_mnist: Path):
    raw = _gzipped_mnist(fake_mnist)
    archive = raw / "train-images-idx3-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cannot unpack .*train-images-idx3-ubyte.gz: it is cut short or not a gzip"):
        load_images("mnist", fake_mnist, download=False)


def test_the_origin_names_gzip_files_and_debians_copy(fake_mnist: Path, tmp_path: Path, monkeypatch):
    raw = _gzipped_mnist(fake_mnist)
    source = make_source("mnist", root=str(fake_mnist), test_size=16)
    assert source.origin.endswith(f"from {raw} (its .gz files, unpacked there)")
    debian = tmp_path / "debian"
    debian.mkdir()
    for f in raw.glob("*.gz"):  # a Fashion-MNIST of the same files, where Debian's package puts it
        f.rename(debian / f.name)
    monkeypatch.setattr("toflow.data.images.DEBIAN_FASHION", debian)
    root = tmp_path / "data"
    source = make_source("fashion_mnist", root=str(root), test_size=16)
    assert f"from {debian} (Debian's dataset-fashion-mnist; data.root {root} has none)" in source.origin
    assert len(source.test) == 16 and (root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_the_digits_come_from_scikit_learn():
    source = make_source("digits", test_size=50, subset=100)
    assert source.origin == "100 training and 50 test images from scikit-learn's 8x8 digits " \
                            "(sklearn.datasets.load_digits)"
    assert source.event_shape == (1, 8, 8) and source.levels == 17 and len(source.test) == 50
    train = load_images("digits", train=True)
    assert train.shape == (1497, 1, 8, 8) and train.dtype == torch.uint8 and int(train.max()) == 16
    assert torch.equal(load_images("digits", train=True, subset=100), train[:100])  # the first of the same order


def test_an_unknown_image_set_and_a_batch_larger_than_the_set_are_one_line(fake_mnist: Path):
    with pytest.raises(DataError, match=r"^data.name: 'svhn' is not one of mnist, fashion_mnist, cifar10, digits$"):
        load_images("svhn")
    source = make_source("mnist", root=str(fake_mnist), test_size=16)
    with pytest.raises(DataError, match=r"^data.batch_size: 64 exceeds the 48 training images$"):
        source.train_batches(64)


def test_cifar10_missing_damaged_and_read_channels_first(tmp_path: Path, monkeypatch):
    import torchvision.datasets.cifar as cifar

    folder = tmp_path / "cifar-10-batches-py"
    with pytest.raises(DataError, match=rf"^data.name=cifar10: missing {folder}; unpack cifar-10-python.tar.gz"):
        make_source("cifar10", root=str(tmp_path), download=False)
    folder.mkdir()
    with pytest.raises(DataError, match="are not CIFAR-10's"):
        load_images("cifar10", tmp_path, download=False)
    rng = np.random.default_rng(0)
    rows = {}
    for name, n in [*((f"data_batch_{i}", 2) for i in range(1, 6)), ("test_batch", 3)]:
        rows[name] = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)  # CIFAR's rows: all red, green, blue
        (folder / name).write_bytes(pickle.dumps({"data": rows[name], "labels": [0] * n}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(k) for k in range(10)]}))
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)  # not CIFAR-10's own MD5s
    test = load_images("cifar10", tmp_path, train=False, download=False)
    assert test.shape == (3, 3, 32, 32) and test.dtype == torch.uint8
    assert torch.equal(test, torch.from_numpy(rows["test_batch"].reshape(3, 3, 32, 32)))
    assert load_images("cifar10", tmp_path, train=True, download=False).shape == (10, 3, 32, 32)


def test_an_unpack_that_dies_midway_leaves_no_partial_file(fake_mnist: Path, monkeypatch):
    """A run started beside another (or killed) while the .gz files are unpacked must never see a
    file cut short: each file is written elsewhere and moved into raw/ whole."""
    import torchvision.datasets.utils as tv_utils

    raw = _gzipped_mnist(fake_mnist)
    real = tv_utils.extract_archive

    def dies_midway(from_path, to_path=None, remove_finished=False):
        if "train-images" in from_path:
            out = Path(to_path) / Path(from_path).name[:-3]
            out.write_bytes(b"\x00\x00\x08\x03")  # an IDX header and nothing else
            raise OSError(28, "No space left on device")
        return real(from_path, to_path, remove_finished)

    monkeypatch.setattr(tv_utils, "extract_archive", dies_midway)
    with pytest.raises(DataError, match="cannot unpack mnist .*No space left on device"):
        load_images("mnist", fake_mnist)
    assert not (raw / "train-images-idx3-ubyte").exists()
    assert [p.name for p in raw.iterdir() if p.name.startswith(".")] == []  # no scratch left behind
    monkeypatch.setattr(tv_utils, "extract_archive", real)
    assert load_images("mnist", fake_mnist).shape == (48, 1, 28, 28)


def test_training_then_evaluate_on_synthetic_images(fake_mnist: Path, tmp_path: Path):
    run = tmp_path / "run"
    args = ["data.name=mnist", f"data.root={fake_mnist}", "data.resize=8",
            "data.batch_size=16", "data.test_size=16", "model.hidden=[8]", "trainer.max_steps=3",
            "trainer.eval_every=3", "trainer.viz_every=3", "trainer.checkpoint_every=3", f"trainer.log_dir={run}",
            "trainer.progress_bar=false", "solver.atol=1e-3", "solver.rtol=1e-3"]
    done = run_cli(*args, config="configs/digits_toflow.yaml")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "bits/dim" in done.stdout and "parameters in 3 CNF blocks" in done.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3
    # eq. 18 by hand from the NLL of x in [0, 1]^64: bpd = (NLL / d + log 256) / log 2
    assert summary["test_bpd"] == pytest.approx((summary["test_nll"] / 64 + math.log(256)) / math.log(2), rel=1e-6)
    assert (run / "samples.png").is_file()

    evaluated = subprocess.run([sys.executable, "-m", "toflow.trainers.evaluate", str(run)], capture_output=True,
                               text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    after = json.loads((run / "summary.json").read_text())
    assert after["checkpoint"].endswith(".ckpt") and after["test_bpd"] == pytest.approx(summary["test_bpd"], rel=1e-6)
    assert f"{after['test_bpd']:.4f} bits/dim" in evaluated.stdout


def test_gpu_table1_script_prints_the_three_modes_side_by_side(fake_mnist: Path, tmp_path: Path):
    # the Table 1 protocol end to end, shrunk to two steps on the CPU
    extra = ("data.resize=8 data.batch_size=16 data.test_size=16 model.hidden=[8] solver.atol=1e-3 "
             "solver.rtol=1e-3 trainer.checkpoint_every=2")
    env = {**os.environ, "PY": sys.executable, "DATA": "mnist", "ROOT": str(fake_mnist), "STEPS": "2",
           "OUT": str(tmp_path / "table1"), "EXTRA": extra}
    done = subprocess.run(["bash", "bench/gpu_table1.sh"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in done.stdout.splitlines() if line.startswith("| ")}
    assert {"fixed", "steer", "toflow"} <= rows.keys()
    summaries = {mode: json.loads((tmp_path / "table1" / mode / "summary.json").read_text())
                 for mode in ("fixed", "steer", "toflow")}
    header = [cell.strip() for cell in next(line for line in done.stdout.splitlines()
                                            if line.startswith("|") and "NFE" in line).split("|")]
    ratio = header.index(next(cell for cell in header if "NFE" in cell and "vs" in cell))

    def nfe(mode):
        return summaries[mode]["nfe_forward_mean"] + summaries[mode]["nfe_backward_mean"]

    for mode in ("fixed", "steer", "toflow"):  # each ratio from the runs' own summaries
        assert summaries[mode]["steps"] == 2
        assert rows[mode].split("|")[ratio].strip() == f"{nfe(mode) / nfe('fixed'):.2f}x", mode


def test_dequantised_batches_are_reproducible_and_in_range():
    from toflow.data.dequantization import ImageBatches

    images = (torch.arange(50) * 5).to(torch.uint8).reshape(50, 1, 1, 1).repeat(1, 1, 4, 4)  # image i is 5i
    a = ImageBatches(images, 8, 256, seed=3)
    b = ImageBatches(images, 8, 256, seed=3, start=7)
    assert torch.equal(a.batch(7), next(iter(b)))  # resuming at batch 7 gives batch 7
    x = a.batch(0)
    assert x.min() >= 0 and x.max() < 1 and x.dtype == torch.float32
    values = torch.floor(x * 256)
    assert (values == values[:, :, :1, :1]).all()  # the noise never crosses a grey level
    assert ((values % 5) == 0).all() and len(values[:, 0, 0, 0].unique()) == 8  # 8 different images
    assert not torch.equal(a.batch(0), a.batch(a.per_epoch))  # a new epoch reshuffles


def test_dequantisation_noise_is_uniform_on_a_grey_level_and_fresh_for_every_batch():
    from scipy.stats import kstest

    from toflow.data.dequantization import ImageBatches

    images = torch.full((16, 1, 8, 8), 100, dtype=torch.uint8)  # every pixel at grey level 100
    batches = ImageBatches(images, 16, 256, seed=5)
    noise = [batches.batch(k) * 256 - 100 for k in range(20)]  # u = x L - v, per pixel
    u = torch.cat([n.flatten() for n in noise]).double()
    assert kstest(u.numpy(), "uniform").pvalue > 1e-3  # U[0, 1) in law (20480 draws)
    assert float(u.mean()) == pytest.approx(0.5, abs=0.01) and float(u.var()) == pytest.approx(1 / 12, abs=0.003)
    # fresh noise: the same images in two batches get independent noise (correlation ~ 0, |r| < 4 / sqrt(n))
    first, second = noise[0].flatten().double(), noise[1].flatten().double()
    r = float(torch.corrcoef(torch.stack([first, second]))[0, 1])
    assert abs(r) < 4 / math.sqrt(first.numel())
