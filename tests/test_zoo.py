"""The toy-data zoo, the decision-boundary pictures, and the chapter's gotchas."""

import math
import re

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from tests.conftest import doc_table
from xor_lightning import intro
from xor_lightning.data import make_xor
from xor_lightning.model import MLP
from xor_lightning.pictures.plot import SQUARE, boundary_figure, boundary_image, plane_extent
from xor_lightning.pictures.units import hidden_units_figure, hidden_units_image
from xor_lightning.train import train
from xor_lightning.zoo import PROBLEMS


@pytest.mark.parametrize("problem", sorted(["xor", *PROBLEMS]))
def test_every_problem_is_float32_balanced_and_seeded(problem):
    X, y = make_xor(2000, seed=4, problem=problem)
    assert X.shape == (2000, 2) and y.shape == (2000, 1) and X.dtype == y.dtype == torch.float32
    assert set(y.unique().tolist()) == {0.0, 1.0} and 0.45 < y.mean() < 0.55
    assert torch.equal(X, make_xor(2000, seed=4, problem=problem)[0])
    noisy, noisy_y = make_xor(2000, noise=0.2, seed=4, problem=problem)
    assert torch.equal(noisy_y, y) and 0.15 < (noisy - X).std() < 0.25


def split(problem: str) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = make_xor(3000, seed=0, problem=problem)
    y = y.squeeze(1).bool()
    return X, y


def test_circle_is_a_disc_inside_a_ring():
    X, y = split("circle")
    r = X.norm(dim=1)
    assert (r[y] <= 0.5 + 1e-6).all()
    assert ((r[~y] >= 0.7 - 1e-6) & (r[~y] <= 1 + 1e-6)).all()


def test_gaussians_are_two_blobs():
    X, y = split("gaussians")
    torch.testing.assert_close(X[y].mean(0), torch.tensor([0.4, 0.4]), atol=0.03, rtol=0)
    torch.testing.assert_close(X[~y].mean(0), torch.tensor([-0.4, -0.4]), atol=0.03, rtol=0)
    assert 0.22 < X[y].std(0).mean() < 0.28


def test_spiral_arms_follow_their_angle():
    X, y = split("spiral")
    r = X.norm(dim=1)
    expected = 1.75 * 2 * math.pi * r + math.pi * (~y).float()
    off = torch.remainder(torch.atan2(X[:, 1], X[:, 0]) - expected + math.pi, 2 * math.pi) - math.pi
    assert off.abs().max() < 1e-3 and r.max() <= 1


def test_moons_follow_make_moons():
    X, y = split("moons")
    raw = X * 1.5 + torch.tensor([0.5, 0.25])  # undo the centring and scaling
    outer, inner = raw[~y], raw[y]
    torch.testing.assert_close(outer.norm(dim=1), torch.ones(len(outer)), atol=1e-5, rtol=0)
    assert (outer[:, 1] >= -1e-6).all()
    centre = torch.tensor([1.0, 0.5])
    torch.testing.assert_close(
        (inner - centre).norm(dim=1), torch.ones(len(inner)), atol=1e-5, rtol=0
    )
    assert (inner[:, 1] <= 0.5 + 1e-6).all()


EXPERIMENTS = {
    re.search(r"experiment=(\w+)", row[0])[1]: float(row[2])
    for row in doc_table("docs/data.md", "## The toy-data zoo", table=2)
}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_experiments_reach_their_documented_accuracy(make_cfg, experiment):
    metrics = train(make_cfg(f"experiment={experiment}", "logger=none"))
    assert metrics["val/acc"] == pytest.approx(EXPERIMENTS[experiment], abs=0.003)  # 1 point


@pytest.mark.slow
def test_pictures_and_histograms_in_the_run_dir_and_tensorboard(make_cfg, tmp_path):
    every10 = [f"callbacks.{c}.every_n_epochs=10" for c in
               ("boundary_plot", "hidden_units_plot", "histograms")]  # fmt: skip
    train(make_cfg("debug=quick", *every10))
    for png in ("boundary.png", "hidden_units.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mux = EventMultiplexer(size_guidance={"images": 0, "histograms": 0})
    mux.AddRunsFromDirectory(str(tmp_path))
    mux.Reload()
    tags = {kind: mux.Runs()["."][kind] for kind in ("images", "histograms", "scalars")}
    params = [f"weights/{n}" for n in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")]
    assert sorted(tags["histograms"]) == sorted(params + [f"{p}.grad" for p in params])
    assert sorted(tags["images"]) == ["pictures/decision_boundary", "pictures/hidden_units"]
    assert tags["scalars"] == []
    # TensorBoard expands the first two tag groups by name: the loss and acc charts (lr after)
    assert min(t.split("/")[0] for t in tags["images"] + tags["histograms"]) > "lr"
    for tag in tags["images"]:
        assert [e.step for e in mux.Images(".", tag)] == [1, 11, 20]  # epochs 0, 10, last
    assert [e.step for e in mux.Histograms(".", "weights/fc1.weight.grad")] == [1, 11, 20]
    [units] = mux.Images(".", "pictures/hidden_units")[-1:]
    assert (units.width, units.height) == (4 * 96 + 3 * 4, 2 * 96 + 4)  # 8 units: 4 x 2


def test_boundary_figure_marks_misclassified_points():
    torch.manual_seed(0)
    X, y = make_xor(200, seed=0)
    net = MLP()  # untrained: about half wrong
    wrong = int(((net(X) > 0).float() != y).sum())
    fig = boundary_figure(net, X, y, "untrained")
    _, labels = fig.axes[0].get_legend_handles_labels()
    assert labels == [f"misclassified ({wrong})"] and wrong > 0
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())
    assert image.shape == (420, 420, 4)  # 4.2 in at 100 dpi, drawn headless


def test_gotchas_show_what_goes_wrong(capsys):
    intro.main(["gotchas"])
    out = capsys.readouterr().out
    assert "x.grad = tensor([ 8., 12.]) (doubled)" in out
    assert "(dropout differs)" in out and "(identical)" in out
    assert "inside no_grad:  requires_grad=False, grad_fn=None" in out
    assert "BCEWithLogitsLoss(logit=30, y=0):   30.0000" in out
    assert "BCELoss(sigmoid(30), y=0):         100.0000" in out
    assert "sigmoid(30) in float32:            1.0 (rounded to exactly 1)" in out
    assert f"BCEWithLogitsLoss(probability):    {math.log(1 + math.e):.4f}" in out  # log(1 + e^1)
    assert "must have the same dtype" in out and "model(x.float()) works: (1, 1)" in out


def test_boundary_image_is_quick_pixels_with_errors_in_black():
    X, y = make_xor(200, seed=0)
    net = MLP(hidden=1)  # P(label 1) = sigmoid(5 tanh(5 x1)): label 1 on the right half
    with torch.no_grad():
        net.fc1.weight.copy_(torch.tensor([[5.0, 0.0]]))
        net.fc2.weight.fill_(5.0)
        net.fc1.bias.zero_(), net.fc2.bias.zero_()
    image = boundary_image(net, X, y, size=120)
    assert image.shape == (120, 120, 3) and image.dtype == np.uint8
    left, right = image[10:110, 5:50], image[10:110, 70:115]
    assert left[..., 2].mean() > left[..., 0].mean()  # blue: label 0
    assert right[..., 0].mean() > right[..., 2].mean()  # red: label 1
    assert (image == 0).all(axis=2).any()  # XOR points on the wrong side: black dots


def test_plane_extent_is_the_datas_square_with_a_margin():
    X, _ = make_xor(400, seed=0)
    assert plane_extent(X) == SQUARE  # [-1, 1]² and half as wide again
    assert plane_extent(X * 10 + torch.tensor([100.0, -50.0])) == (85, 115, -65, -35)
    assert plane_extent(torch.tensor([[2.0, 3.0], [2.0, 3.0]])) == (1, 3, 2, 4)  # one point


def test_hidden_units_image_shows_each_units_side_and_line():
    X, y = make_xor(200, seed=0)
    net = MLP(hidden=2)  # unit 1: tanh(5 x1), line x1 = 0; unit 2: tanh(5 x2 - 2.5), x2 = 0.5
    with torch.no_grad():
        net.fc1.weight.copy_(torch.tensor([[5.0, 0.0], [0.0, 5.0]]))
        net.fc1.bias.copy_(torch.tensor([0.0, -2.5]))
    image = hidden_units_image(net, X[:0], y[:0], size=120).astype(int)
    assert image.shape == (120, 2 * 120 + 4, 3)  # two panels side by side, 4 px apart
    one, two = image[:, :120], image[:, 124:]
    orange = lambda px: (px[..., 0] - px[..., 2]).mean() > 50  # noqa: E731
    assert orange(one[:, 70:]) and not orange(one[:, :50])  # positive right of x1 = 0
    assert orange(two[:30]) and not orange(two[50:])  # positive above x2 = 0.5
    grey = (one == 60).all(axis=2)
    assert grey[:, 59:61].all(axis=0).any() and not grey[:, :55].any()  # the line x1 = 0
    row = round((1.5 - 0.5) / 3 * 119)
    assert (two[row - 1 : row + 2] == 60).all(axis=2).any(axis=0).all()  # the line x2 = 0.5
    titles = [ax.get_title() for ax in hidden_units_figure(net, X, y).axes]
    assert titles == ["unit 1: tanh(+5.0·x1 +0.0·x2 +0.0)", "unit 2: tanh(+0.0·x1 +5.0·x2 -2.5)"]
    relu = MLP(hidden=1, activation="relu")  # 0 left of x1 = 0: white; its input right of it
    with torch.no_grad():
        relu.fc1.weight.copy_(torch.tensor([[5.0, 0.0]])), relu.fc1.bias.zero_()
    one = hidden_units_image(relu, X[:0], y[:0], size=120).astype(int)
    assert one.shape == (120, 120, 3) and (one[:, :55] == 255).all() and orange(one[:, 70:])


def test_the_boundary_picture_follows_the_task():
    """Three classes: each region in its class's colour; a regression: the value's colour."""
    from xor_lightning.multiclass import Multiclass
    from xor_lightning.pictures.plot import PALETTE
    from xor_lightning.regression import Regression

    X = torch.zeros(0, 2)
    classes = torch.nn.Linear(2, 3)  # class 0 where x1 > 0, class 2 where x1 < 0
    with torch.no_grad():
        classes.weight.copy_(torch.tensor([[5.0, 0.0], [0.0, 0.0], [-5.0, 0.0]]))
        classes.bias.zero_()
    image = boundary_image(classes, X, X[:, :1], size=120, task=Multiclass(3)).astype(float)
    left, right = image[10:110, 5:50].mean((0, 1)), image[10:110, 70:115].mean((0, 1))
    hue = lambda c: c - c.mean()  # noqa: E731  (pale colours: compare their tints)
    assert np.dot(hue(right), hue(PALETTE[0])) > np.dot(hue(right), hue(PALETTE[2]))
    assert np.dot(hue(left), hue(PALETTE[2])) > np.dot(hue(left), hue(PALETTE[0]))
    assert (image[10:110, 55:65] == 90).all(axis=2).any()  # the line between them, grey
    value = torch.nn.Linear(2, 1)  # the prediction grows with x1: viridis purple to yellow
    with torch.no_grad():
        value.weight.copy_(torch.tensor([[1.0, 0.0]])), value.bias.zero_()
    image = boundary_image(value, X, X[:, :1], size=120, task=Regression()).astype(float)
    assert image[:, 110:, 1].mean() > image[:, :10, 1].mean() + 50  # yellow has the green
