import logging
import math
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evolution.data import DigitsDataModule
from evolution.genome import Genome, SearchSpace
from evolution.network import compile, sparse_forward
from evolution.readout import ridge_readout
from evolution.sampling import random_genome
from hypernet.estimator import HypernetEstimator
from hypernet.graph import to_batch
from hypernet.init import predicted_sparsenet
from hypernet.model import HyperNet
from hypernet.module import HypernetModule, hypernet_loss, predicted_logits

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
DIGITS = SearchSpace((1, 8, 8), 10, levels=2, width=16)


def _model(hidden: int = 32, layers: int = 2) -> HyperNet:
    torch.manual_seed(0)
    return HyperNet(hidden, layers).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A hypernet on a 2 x 16 digits grid after 5 steps (genomes with skip edges too), saved by Lightning."""
    path = tmp_path_factory.mktemp("hypernet") / "h.ckpt"
    module = HypernetModule(DIGITS.input_shape, 10, levels=2, width=16, hidden=16, layers=2, density=(0.2, 0.5),
                            skip=(0.0, 0.5))
    trainer = pl.Trainer(max_steps=5, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=64))
    trainer.save_checkpoint(path)
    return str(path)


def test_predictions_fit_the_genome_and_run():
    space = SearchSpace((1, 8, 8), 10, levels=3, width=32)
    g = random_genome(space, np.random.default_rng(0), density=0.2, skip=0.5)
    with torch.no_grad():
        w = _model()(to_batch([g]))[0]
        logits = sparse_forward(compile(g), w, torch.rand(5, 64))
    assert w.edge.shape == (g.n_edges,) and w.norm_weight.shape == w.norm_bias.shape == (len(g.hidden),)
    assert w.bias.shape == (10,) and logits.shape == (5, 10) and torch.isfinite(logits).all()
    assert ((w.norm_weight >= 0.5) & (w.norm_weight <= 1.5)).all() and (w.norm_bias.abs() <= 0.5).all()


def test_prediction_i_is_the_weight_of_edge_i():
    # The GNN sees a graph, not an order: shuffling the genome's edges must shuffle its weights alike.
    g = random_genome(DIGITS, np.random.default_rng(3), density=0.4)
    perm = np.random.default_rng(4).permutation(g.n_edges)
    shuffled = Genome(DIGITS, g.hidden, g.edges[perm])
    model = _model()
    with torch.no_grad():
        a, b = model(to_batch([g]))[0], model(to_batch([shuffled]))[0]
        x = torch.rand(7, 64)
        za, zb = sparse_forward(compile(g), a, x), sparse_forward(compile(shuffled), b, x)
    assert torch.allclose(a.edge[torch.as_tensor(perm)], b.edge, atol=1e-6)
    assert torch.allclose(za, zb, atol=1e-5)


def test_batching_16_equals_one_by_one():
    space = SearchSpace((1, 8, 8), 10, levels=3, width=32)
    genomes = [random_genome(space, np.random.default_rng(i), density=0.15) for i in range(16)]
    model = _model()
    with torch.no_grad():
        together = model(to_batch(genomes))
        for g, w in zip(genomes, together):
            alone = model(to_batch([g]))[0]
            for a, b in zip(w, alone):
                assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def test_inference_decoder_equals_the_training_decoder():
    # Without grad the edge weights come from sampled matmuls, with grad from gathers: same values.
    space = SearchSpace((1, 8, 8), 10, levels=3, width=32)
    genomes = [random_genome(space, np.random.default_rng(i), density=0.2, skip=0.3) for i in range(4)]
    model = _model()
    torch.nn.init.normal_(model.modulate.weight)  # zero at init: make the edge features count
    torch.nn.init.normal_(model.modulate.bias)
    with torch.no_grad():
        fast = model(to_batch(genomes))
    trained = model(to_batch(genomes))
    for a, b in zip(fast, trained):
        assert b.edge.requires_grad and not a.edge.requires_grad
        assert torch.allclose(a.edge, b.edge.detach(), rtol=1e-5, atol=1e-6)


def test_genomes_wider_and_deeper_than_trained_get_finite_weights(checkpoint):
    model = HypernetModule.load_from_checkpoint(checkpoint, weights_only=False).model  # trained on 2 x 16
    bigger = SearchSpace((1, 8, 8), 10, levels=DIGITS.levels + 1, width=2 * DIGITS.width)
    g = random_genome(bigger, np.random.default_rng(0), density=0.6, n_levels=3, fill=(1.0, 1.0))
    assert len(g.levels_present()) == 3 and len(g.hidden) > 2 * DIGITS.width
    x, _ = DigitsDataModule().tensors("val")
    with torch.no_grad():
        w = model(to_batch([g]))[0]
        logits = sparse_forward(compile(g), w, x)
    assert all(torch.isfinite(t).all() for t in w) and torch.isfinite(logits).all()
    assert logits.abs().max() < 1e3  # fan-in scaling keeps them in range, not merely finite


def test_training_steps_reduce_the_loss():
    # One fixed genome (nested, full, one level): the hypernet must fit it within 40 steps.
    module = HypernetModule(DIGITS.input_shape, 10, levels=1, width=32, sampler="nested", density=(0.5, 0.5),
                            fill=(1.0, 1.0), hidden=32, seed=0)
    data = DigitsDataModule(batch_size=64)
    x, y = data.tensors("train")
    genomes = module.sampler.sample(np.random.default_rng(0), 2)

    def loss() -> float:
        with torch.no_grad():
            return float(torch.stack([F.cross_entropy(z, y) for z in module(genomes, x)]).mean())

    before = loss()
    pl.Trainer(max_steps=40, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False).fit(module, datamodule=data)
    assert loss() < min(0.85 * before, np.log(10) - 0.3)


def test_same_seed_same_hypernet_and_no_global_seeding():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = HypernetModule(DIGITS.input_shape, 10, levels=2, width=16, seed=7)
    assert torch.equal(torch.rand(3), expected)  # building a module leaves the global RNG alone
    b = HypernetModule(DIGITS.input_shape, 10, levels=2, width=16, seed=7)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_estimator_round_trip_is_deterministic_and_matches_the_initialized_net(checkpoint):
    data = DigitsDataModule()
    est = HypernetEstimator(data, checkpoint, batch=4)
    genomes = [random_genome(DIGITS, np.random.default_rng(i), density=0.3) for i in range(6)]
    a, b = est.estimate(genomes), est.estimate(genomes)
    assert [e.score for e in a] == [e.score for e in b] and all(e.ok and e.seconds > 0 for e in a)
    x, y = data.tensors("val")
    for g, e in zip(genomes[:2], a):
        net = est.initialize(g)
        with torch.no_grad():
            assert float((net(x).argmax(1) == y).float().mean()) == pytest.approx(e.score)


def test_tied_genomes_are_scored_as_the_network_they_build(checkpoint):
    from evolution.mutations import tie_weights

    data = DigitsDataModule()
    est = HypernetEstimator(data, checkpoint, batch=4)
    rng = np.random.default_rng(7)
    g = random_genome(DIGITS, rng, density=0.3)
    for _ in range(3):
        g, _ = tie_weights(g, rng)
    assert g.n_weights < g.n_edges
    with torch.no_grad():
        raw = est.module.model(to_batch([g]))[0].edge
    assert not torch.allclose(raw, raw.new_tensor(np.bincount(g.groups, raw.numpy()) / np.bincount(g.groups))[g.groups])
    x, y = data.tensors("val")
    with torch.no_grad():  # the network verify and the initializer build: one weight per tie group
        net = predicted_sparsenet(est.module.model, g, rescale=False)
        assert torch.allclose(predicted_logits(est.module.model, [g], x)[0], net(x), atol=1e-5)
        built = float((est.initialize(g)(x).argmax(1) == y).float().mean())
    assert est.estimate([g])[0].score == pytest.approx(built)


def test_predicted_sparsenet_carries_the_predictions(checkpoint):
    model = HypernetModule.load_from_checkpoint(checkpoint, weights_only=False).model
    g = random_genome(DIGITS, np.random.default_rng(5), density=0.3)
    net = predicted_sparsenet(model, g, rescale=False)
    with torch.no_grad():
        w = model(to_batch([g]))[0]
    assert torch.equal(net.edge_weights(), w.edge) and torch.equal(net.norm_weight, w.norm_weight)
    assert torch.equal(net.bias, w.bias) and all(p.requires_grad for p in net.parameters())


def test_rescaled_predictions_keep_the_function_at_the_init_scale(checkpoint):
    model = HypernetModule.load_from_checkpoint(checkpoint, weights_only=False).model
    g = random_genome(DIGITS, np.random.default_rng(5), density=0.3)
    x = torch.rand(64, 64)
    plain, scaled = predicted_sparsenet(model, g, rescale=False), predicted_sparsenet(model, g)
    with torch.no_grad():
        # LayerNorm absorbs a per-level scale, up to its eps (measured: 1e-4 here, 5e-5 of the logits on mnist)
        assert torch.allclose(scaled(x), plain(x), rtol=1e-3, atol=1e-3)
        assert torch.equal(scaled(x).argmax(1), plain(x).argmax(1))
    fan_in = np.bincount(g.edges[:, 1], minlength=DIGITS.n_neurons)
    *hidden, out = scaled.plan.pairs_into
    for pairs in hidden:  # each hidden level now has SparseNet's init RMS, uniform within 1/sqrt(fan_in)
        idx = torch.cat([p.edges for p in pairs])
        want = np.sqrt(np.mean(1 / (3 * fan_in[g.edges[idx.numpy(), 1]])))
        assert float(scaled.edge_weights()[idx].square().mean().sqrt()) == pytest.approx(want, rel=1e-4)
        assert not torch.allclose(scaled.edge_weights()[idx], plain.edge_weights()[idx])
    idx = torch.cat([p.edges for p in out])
    assert torch.equal(scaled.edge_weights()[idx], plain.edge_weights()[idx])  # outputs: scale is function


def test_a_bad_genome_gets_an_error_and_its_batch_still_scores(checkpoint):
    est = HypernetEstimator(DigitsDataModule(), checkpoint, batch=16)
    good = [random_genome(DIGITS, np.random.default_rng(i), density=0.3) for i in range(3)]
    alien = random_genome(SearchSpace((1, 4, 4), 10, levels=1, width=8), np.random.default_rng(0), density=0.5)
    out = est.estimate([good[0], alien, good[1], good[2]])
    assert [e.ok for e in out] == [True, False, True, True]
    assert "expects 16" in out[1].error
    assert [e.score for e in out[:1] + out[2:]] == [e.score for e in est.estimate(good)]


def test_checkpoint_of_another_shape_is_one_line(checkpoint):
    mnist_like = SimpleNamespace(input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(ValueError, match=r"trained on input shape \(1, 8, 8\) with 10 classes; the data has "
                                         r"\(1, 28, 28\) and 10") as err:
        HypernetEstimator(mnist_like, checkpoint)
    assert "\n" not in str(err.value)


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        HypernetEstimator(DigitsDataModule(), str(tmp_path / "nope.ckpt"))


def test_train_estimator_starts_from_predictions_then_fine_tunes(checkpoint):
    from evolution.estimators import TrainEstimator

    data = DigitsDataModule()
    hyper = HypernetEstimator(data, checkpoint, batch=4)
    genomes = [random_genome(DIGITS, np.random.default_rng(i), density=0.3) for i in range(3)]
    predicted = [e.score for e in hyper.estimate(genomes)]
    zero = TrainEstimator(data, steps=0, initializer=hyper)
    assert [e.score for e in zero.estimate(genomes)] == pytest.approx(predicted)
    scratch = [e.score for e in TrainEstimator(data, steps=0).estimate(genomes)]
    assert scratch != pytest.approx(predicted)
    tuned = TrainEstimator(data, steps=30, initializer=hyper).estimate(genomes)
    assert all(e.ok for e in tuned) and np.mean([e.score for e in tuned]) > np.mean(predicted)


def test_cosine_schedule_anneals_to_zero_over_the_fit(tmp_path):
    module = HypernetModule(DIGITS.input_shape, 10, levels=2, width=16, hidden=8, layers=1, lr=1e-3,
                            scheduler="cosine")
    trainer = pl.Trainer(max_steps=6, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=64))
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(0.0, abs=1e-12)
    # Resumed with twice the budget: it anneals to the new end, halfway at the old one (a restored
    # CosineAnnealingLR kept the old length and climbed back to the full rate).
    trainer.save_checkpoint(tmp_path / "h.ckpt")
    lrs = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    longer = pl.Trainer(max_steps=12, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Record()])
    longer.fit(module, datamodule=DigitsDataModule(batch_size=64), ckpt_path=tmp_path / "h.ckpt")
    assert len(lrs) == 6 and lrs[0] == pytest.approx(0.5e-3) and all(a > b for a, b in zip(lrs, lrs[1:]))
    assert longer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="scheduler 'step': expected 'none' or 'cosine'"):
        HypernetModule(DIGITS.input_shape, 10, scheduler="step")


def test_population_guided_update_lowers_the_population_loss_and_resumes(checkpoint):
    data = DigitsDataModule()
    est = HypernetEstimator(data, checkpoint, update_steps=60, genomes_per_step=4, lr=3e-3, seed=1)
    pop = [random_genome(DIGITS, np.random.default_rng(i), density=0.3) for i in range(4)]
    x, y = data.tensors("val")

    def loss() -> float:
        with torch.no_grad():
            return float(torch.stack([F.cross_entropy(z, y) for z in
                                      [sparse_forward(compile(g), w, x) for g, w in
                                       zip(pop, est.module.model(to_batch(pop)))]]).mean())

    before, state = loss(), est.state_dict()
    est.update(pop)
    after = [e.score for e in est.estimate(pop)]
    assert loss() < before - 0.02  # measured: 2.30 -> 2.24
    assert not est.module.model.training  # scoring after an update runs in eval mode
    assert est.opt.param_groups[0]["lr"] == pytest.approx(3e-3 * (1 + math.cos(math.pi * 59 / 60)) / 2)  # annealed
    twin = HypernetEstimator(data, checkpoint, update_steps=60, genomes_per_step=4, lr=3e-3, seed=99)
    twin.load_state_dict(state)
    twin.update(pop)
    assert [e.score for e in twin.estimate(pop)] == after
    frozen = HypernetEstimator(data, checkpoint)
    frozen.update(pop)  # update_steps=0: the hypernet stays as trained
    assert all(torch.equal(p, q) for p, q in zip(frozen.module.model.state_dict().values(),
                                                  HypernetEstimator(data, checkpoint).module.model.state_dict().values()))


def test_training_through_the_readout_lowers_the_readout_loss_and_the_estimator_loads_it(tmp_path, monkeypatch):
    module = HypernetModule(DIGITS.input_shape, 10, levels=1, width=32, sampler="nested", density=(0.5, 0.5),
                            fill=(1.0, 1.0), hidden=32, readout=96, seed=0)
    data = DigitsDataModule(batch_size=128)
    x, y = data.tensors("train")
    genomes = module.sampler.sample(np.random.default_rng(0), 2)

    def loss() -> float:  # readout fitted on 96 examples, scored on 600 others
        with torch.no_grad():
            return float(hypernet_loss(module.model, genomes, x[:696], y[:696], 96, 1.0, module.readout_scale))

    before, scale = loss(), float(module.readout_scale)
    trainer = pl.Trainer(max_steps=40, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    assert loss() < 0.85 * before and float(module.readout_scale) != scale
    trainer.save_checkpoint(tmp_path / "r.ckpt")
    est = HypernetEstimator(data, str(tmp_path / "r.ckpt"), readout=96, update_steps=20, genomes_per_step=2)
    assert torch.equal(est.module.readout_scale, module.readout_scale)
    assert all(0.0 <= e.score <= 1.0 for e in est.estimate(genomes))
    # Its population updates train through the readout too, on 128 + 96 examples a step.
    import hypernet.estimator as estimator_module

    batches = []

    def spy(model, genomes, x, y, support, ridge, scale, batched=False):
        batches.append((len(y), support))
        return hypernet_loss(model, genomes, x, y, support, ridge, scale, batched)

    monkeypatch.setattr(estimator_module, "hypernet_loss", spy)
    module.model, trained = est.module.model, loss()
    est.update(genomes)
    assert batches == [(224, 96)] * 21 and loss() < trained  # 20 steps, then the divergence check after the last


def test_readout_scores_the_predicted_hidden_levels_with_a_refitted_output_level(checkpoint):
    data = DigitsDataModule()
    frozen, ro = HypernetEstimator(data, checkpoint), HypernetEstimator(data, checkpoint, readout=400, ridge=2.0)
    genomes = [random_genome(DIGITS, np.random.default_rng(i), density=0.3) for i in range(3)]
    x, y = data.tensors("train")
    xv, yv = data.tensors("val")
    with torch.no_grad():
        for g, e in zip(genomes, ro.estimate(genomes)):
            plan = compile(g)
            w = ridge_readout(plan, ro.module.model(to_batch([g]))[0], x[:400], y[:400], 2.0)
            assert e.score == pytest.approx(float((sparse_forward(plan, w, xv).argmax(1) == yv).float().mean()))
    assert [e.score for e in ro.estimate(genomes)] != [e.score for e in frozen.estimate(genomes)]


def test_a_diverging_update_stops_with_one_line(checkpoint):
    est = HypernetEstimator(DigitsDataModule(), checkpoint, update_steps=5, lr=1e30)
    pop = [random_genome(DIGITS, np.random.default_rng(i), density=0.3) for i in range(4)]
    with pytest.raises(FloatingPointError, match=r"^hypernet update diverged at step [1-5]: loss is (nan|inf); "
                                                 "lower the learning rate$"):
        est.update(pop)


def test_update_settings_are_checked_in_one_line(checkpoint):
    with pytest.raises(ValueError, match="needs data"):
        HypernetEstimator(None, checkpoint, update_steps=3)
    with pytest.raises(ValueError, match="needs data"):
        HypernetEstimator(None, checkpoint, readout=100)
    with pytest.raises(ValueError, match="ridge 0"):
        HypernetEstimator(DigitsDataModule(), checkpoint, readout=100, ridge=0)
    with pytest.raises(ValueError, match="genomes_per_step 0"):
        HypernetEstimator(DigitsDataModule(), checkpoint, update_steps=3, genomes_per_step=0)
    with pytest.raises(ValueError, match="lr -0.1"):
        HypernetEstimator(DigitsDataModule(), checkpoint, update_steps=3, lr=-0.1)


def test_same_seed_same_trained_hypernet():
    def fit() -> dict:
        pl.seed_everything(0, verbose=False)
        module = HypernetModule(DIGITS.input_shape, 10, levels=2, width=16, hidden=16, layers=2, density=(0.2, 0.5))
        # deterministic: on a GPU (accelerator auto picks one) scatter / index_add are not, unless asked
        trainer = pl.Trainer(max_steps=8, limit_val_batches=0, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, deterministic=True)
        try:
            trainer.fit(module, datamodule=DigitsDataModule(batch_size=64))
        finally:  # Lightning leaves the process-wide switch on
            torch.use_deterministic_algorithms(False)
        return module.state_dict()

    a, b = fit(), fit()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.source.weight"], HypernetModule(DIGITS.input_shape, 10, levels=2, width=16, hidden=16,
                                                                    layers=2).state_dict()["model.source.weight"])


def test_directed_layer_equals_calling_its_sage_convs_in_value_and_gradient():
    from hypernet.model import DirectedLayer, _adjacency

    torch.manual_seed(3)
    layer = DirectedLayer(8).double()
    batch = to_batch([random_genome(DIGITS, np.random.default_rng(s), 0.3) for s in range(3)])
    n, ei = batch.num_nodes, batch.edge_index
    along, against = _adjacency(ei, n)[0].double(), _adjacency(ei.flip(0), n)[0].double()
    h = torch.randn(n, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(n, 8, dtype=torch.float64)
    got = layer(h, along, against)
    (got * weight).sum().backward()
    grads = [h.grad.clone()] + [p.grad.clone() for p in layer.parameters()]
    h.grad = None
    layer.zero_grad()
    # PyG's own mean aggregation (torch.sparse.mm(..., "mean"), its backward sorting)
    want = layer.norm(h + F.gelu(layer.along(h, along) + layer.against(h, against)))
    (want * weight).sum().backward()
    torch.testing.assert_close(got, want)
    for a, b in zip(grads, [h.grad] + [p.grad for p in layer.parameters()]):
        torch.testing.assert_close(a, b)
    assert grads[0].abs().sum() > 0 and (along.crow_indices().diff() == 0).any()  # a node nothing feeds is covered


def test_batched_losses_and_scores_equal_the_per_genome_path(checkpoint):
    model = _model()
    genomes = [random_genome(DIGITS, np.random.default_rng(s), 0.3) for s in range(5)]
    x, y = DigitsDataModule().tensors("train")
    x, y = x[:96], y[:96]
    scale = torch.tensor(10.0)
    for support in (0, 48):
        one = hypernet_loss(model, genomes, x, y, support, 1.0, scale)
        grads = torch.autograd.grad(one, list(model.parameters()), allow_unused=True)
        many = hypernet_loss(model, genomes, x, y, support, 1.0, scale, batched=True)
        torch.testing.assert_close(many, one)
        for a, b in zip(torch.autograd.grad(many, list(model.parameters()), allow_unused=True), grads):
            if b is not None:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    data = DigitsDataModule()
    for readout in (0, 200):
        a = [e.score for e in HypernetEstimator(data, checkpoint, readout=readout, batched=False).estimate(genomes)]
        b = [e.score for e in HypernetEstimator(data, checkpoint, readout=readout, batched=True).estimate(genomes)]
        assert np.abs(np.array(a) - np.array(b)).max() <= 1 / len(data.tensors("val")[1])
