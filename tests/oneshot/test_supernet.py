import math
from pathlib import Path

import numpy as np
import pytest
import torch

from evolution.data import DigitsDataModule
from evolution.genome import SearchSpace
from evolution.network import SparseNet, compile, sparse_forward
from evolution.readout import readout_loss, ridge_readout
from evolution.sampling import GenomeSampler, random_genome
from evolution import seeds
from oneshot.__main__ import main as cli
from oneshot.estimator import SupernetEstimator
from oneshot.module import SupernetModule, supernet_loss
from oneshot.optim import LazyAdam
from oneshot.supernet import Supernet

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace((1, 8, 8), 10, levels=3, width=32)


def test_supernet_equals_sparsenet_with_gathered_weights(space):
    sup = Supernet(space, torch.Generator().manual_seed(0))
    with torch.no_grad():
        sup.norm_weight.uniform_(0.5, 1.5)
        sup.norm_bias.uniform_(-0.2, 0.2)
        sup.bias.uniform_(-0.2, 0.2)
    rng = np.random.default_rng(0)
    x = torch.rand(20, 64)
    for _ in range(10):
        g = random_genome(space, rng, density=float(rng.uniform(0.05, 0.6)), skip=0.3)
        net = SparseNet(g)
        net.set_weights(sup.weights_for(g))
        assert (sup(g, x) - net(x)).abs().max() <= 1e-6


def test_bank_has_every_potential_edge_once(space):
    sup = Supernet(space)
    sizes = [64, 32, 32, 32, 10]
    assert sup.n_bank == sum(a * b for i, a in enumerate(sizes) for b in sizes[i + 1:])
    s, d = np.meshgrid(np.arange(space.n_neurons), np.arange(space.n_neurons), indexing="ij")
    up = space.level[s.ravel()] < space.level[d.ravel()]
    idx = sup.bank_index(np.stack([s.ravel()[up], d.ravel()[up]], 1))
    assert np.array_equal(np.sort(idx), np.arange(sup.n_bank))


def test_a_step_moves_only_the_sampled_genomes_entries(space):
    sup = Supernet(space, torch.Generator().manual_seed(0))
    opt = LazyAdam(list(sup.parameters()), lr=1e-2, rows=sup.touched_rows)
    g1 = random_genome(space, np.random.default_rng(1), density=0.2)
    g2 = random_genome(space, np.random.default_rng(2), density=0.2)
    before = {k: v.detach().clone() for k, v in sup.state_dict().items()}
    for _ in range(2):  # twice: a stale-momentum optimizer would move entries of g1 without g1
        loss = supernet_loss(sup, [g1], torch.rand(8, 64), torch.randint(0, 10, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss = supernet_loss(sup, [g2], torch.rand(8, 64), torch.randint(0, 10, (8,)))
    opt.zero_grad()
    loss.backward()
    opt.step()
    moved = (sup.bank.detach() != before["bank"]).squeeze(1).numpy()
    used = np.zeros(sup.n_bank, dtype=bool)
    used[sup.bank_index(g1.edges)] = True
    used[sup.bank_index(g2.edges)] = True
    assert moved.any() and not (moved & ~used).any()
    slots = np.zeros(space.levels * space.width, dtype=bool)
    slots[np.concatenate([g1.hidden, g2.hidden]) - space.n_inputs] = True
    assert not ((sup.norm_weight.detach() != before["norm_weight"]).squeeze(1).numpy() & ~slots).any()


def test_readout_training_lowers_the_readout_loss_and_moves_only_sampled_entries():
    module = SupernetModule((1, 8, 8), 10, levels=1, width=32, sampler="nested", density=(0.5, 0.5), fill=(1.0, 1.0),
                            genomes_per_step=1, readout=96, seed=0)
    opt = module.configure_optimizers()
    x, y = DigitsDataModule().tensors("train")
    g = module.sampler.sample(np.random.default_rng(0), 1)[0]

    def loss() -> torch.Tensor:
        return readout_loss(module.supernet.plan_for(g), module.supernet.weights_for(g), x[:696], y[:696], 96, 1.0,
                            module.readout_scale)

    before_loss, bank, scale = float(loss()), module.supernet.bank.detach().clone(), float(module.readout_scale)
    for step in range(30):
        idx = torch.as_tensor(np.random.default_rng(step).choice(len(y), 224, replace=False))
        step_loss = module.training_step((x[idx], y[idx]), step)
        opt.zero_grad()
        step_loss.backward()
        opt.step()
    assert float(loss()) < 0.85 * before_loss and float(module.readout_scale) != scale
    moved = (module.supernet.bank.detach() != bank).squeeze(1).numpy()
    used = np.zeros(module.supernet.n_bank, dtype=bool)
    used[module.supernet.bank_index(g.edges)] = True
    assert moved.any() and not (moved & ~used).any()
    with pytest.raises(ValueError, match="not both readout and distill"):
        SupernetModule((1, 8, 8), 10, readout=64, distill=True)


def test_tied_genome_uses_one_weight_per_group():
    space = seeds.space_for_spec("conv:2x3,mlp:8", (1, 6, 6), 3)
    g = seeds.build("conv:2x3,mlp:8", space)
    sup = Supernet(space)
    w = sup.weights_for(g).edge
    groups = torch.as_tensor(g.groups)
    assert (torch.bincount(groups) > 1).any()
    for k in range(g.n_weights):
        assert torch.allclose(w[groups == k], w[groups == k][0].expand((groups == k).sum()))


def test_samplers_feed_the_module():
    data = DigitsDataModule()
    for kind in GenomeSampler.KINDS:
        m = SupernetModule(data.input_shape, data.num_classes, levels=2, width=16, sampler=kind, genomes_per_step=3)
        x, y = data.tensors("train")
        state = m.rng.bit_generator.state
        loss = m.training_step((x[:32], y[:32]), 0)
        # The step's loss is the mean over the sampler's next three genomes (redrawn from its state).
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        genomes = m.sampler.sample(rng, 3)
        for g in genomes:
            g.validate()
        assert len(genomes) == 3 and torch.isfinite(loss)
        assert torch.allclose(loss, supernet_loss(m.supernet, genomes, x[:32], y[:32])), kind


def _skip_edges(g) -> int:
    """Edges of the compiled plan's pairs that jump over a present level."""
    return sum(len(p.edges) for k, pairs in enumerate(compile(g).pairs_into, 1) for p in pairs if p.src_level != k - 1)


def test_sampler_skip_joins_nonconsecutive_levels(space):
    """Searches add edges across levels; with ``skip`` the samplers draw such genomes too, and without
    it they draw exactly what they drew before ``skip`` existed."""
    for kind in ("uniform", "fair"):
        plain = GenomeSampler(space, kind, density=(0.1, 0.3)).sample(np.random.default_rng(0), 12)
        same = GenomeSampler(space, kind, density=(0.1, 0.3), skip=(0.0, 0.0)).sample(np.random.default_rng(0), 12)
        assert [g.to_json() for g in plain] == [g.to_json() for g in same]
        assert sum(map(_skip_edges, plain)) == 0
        skipping = GenomeSampler(space, kind, density=(0.1, 0.3), skip=(0.5, 0.5)).sample(np.random.default_rng(0), 12)
        assert sum(_skip_edges(g) > 0 for g in skipping) >= 6
    with pytest.raises(ValueError, match="nested sampler's fixed keys join consecutive levels only"):
        GenomeSampler(space, "nested", skip=(0.0, 0.5))
    with pytest.raises(ValueError, match=r"skip range \(0.5, 0.1\)"):
        GenomeSampler(space, "uniform", skip=(0.5, 0.1))
    data = DigitsDataModule()
    m = SupernetModule(data.input_shape, data.num_classes, levels=2, width=16, skip=(0.5, 0.5), genomes_per_step=3)
    x, y = data.tensors("train")
    assert torch.isfinite(m.training_step((x[:32], y[:32]), 0))


def _fit(tmp_path, *extra):
    return cli(["fit", "--config", str(REPO / "configs/oneshot/digits.yaml"), "--trainer.default_root_dir", str(tmp_path),
                "--checkpoint.dirpath", str(tmp_path / "ckpt"), "--trainer.enable_progress_bar", "false",
                "--model.width", "16", *extra])


def test_fit_resume_and_estimator(tmp_path, capsys):
    assert _fit(tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3") == 0
    last = tmp_path / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 3
    assert _fit(tmp_path, "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3", "--ckpt_path", str(last)) == 0
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 6 and "sampler_rng" in ckpt
    data = DigitsDataModule()
    est = SupernetEstimator(data, str(last))
    g = random_genome(est.space, np.random.default_rng(0), density=0.3)
    a, b = est.estimate([g, g])
    assert a.ok and a.score == b.score and 0 <= a.score <= 1 and a.seconds > 0
    with pytest.raises(FileNotFoundError, match="supernet checkpoint .*nope.ckpt does not exist"):
        SupernetEstimator(data, str(tmp_path / "nope.ckpt"))
    # a standalone start from the inherited weights: the supernet's function, hidden levels at the init's scale
    net = est.initialize(g).eval()
    xv = data.tensors("val")[0][:64]
    with torch.no_grad():
        assert torch.allclose(net(xv), est.supernet(g, xv), atol=1e-3)  # up to LayerNorm's eps
        fresh = SparseNet(g)
        for pairs in net.plan.pairs_into[:-1]:
            idx = torch.cat([p.edges for p in pairs])
            ratio = net.weights().edge[idx].square().mean() / fresh.weights().edge[idx].square().mean()
            assert 0.7 < float(ratio) < 1.4
    # readout: the inherited hidden levels with the output level refitted on 500 training examples
    ro = SupernetEstimator(data, str(last), readout=500)
    plan, w = ro.supernet.plan_for(g), ro.supernet.weights_for(g)
    x, y = data.tensors("train")
    fit = ridge_readout(plan, w, x[:500], y[:500])
    xv, yv = data.tensors("val")
    assert ro.estimate([g])[0].score == pytest.approx(float((sparse_forward(plan, fit, xv).argmax(1) == yv).float().mean()))
    assert ro.estimate([g])[0].score != a.score
    with pytest.raises(ValueError, match="no readout with fine-tuning"):
        SupernetEstimator(data, str(last), readout=500, finetune_steps=5)


def test_checkpoint_of_another_shape_is_one_line(tmp_path, mnist_t10k):
    assert _fit(tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1") == 0
    from evolution.data import IDXDataModule

    with pytest.raises(ValueError, match=r"trained on input shape \(1, 8, 8\) with 10 classes; the data has \(1, 28, 28\)"):
        SupernetEstimator(IDXDataModule(str(mnist_t10k)), str(tmp_path / "ckpt" / "last.ckpt"))


def test_population_guided_update_changes_scores_and_resumes(tmp_path):
    assert _fit(tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2") == 0
    data = DigitsDataModule()
    ckpt = str(tmp_path / "ckpt" / "last.ckpt")
    est = SupernetEstimator(data, ckpt, update_steps=5, seed=1)
    pop = [random_genome(est.space, np.random.default_rng(i), density=0.3) for i in range(4)]
    before = [e.score for e in est.estimate(pop)]
    state = est.state_dict()
    est.update(pop)
    after = [e.score for e in est.estimate(pop)]
    assert before != after
    twin = SupernetEstimator(data, ckpt, update_steps=5, seed=99)
    twin.load_state_dict(state)
    twin.update(pop)
    assert [e.score for e in twin.estimate(pop)] == after
    # Each update anneals from lr to 0 (cosine): its last step ran at lr * (1 + cos(4 pi / 5)) / 2.
    assert est.opt.param_groups[0]["lr"] == pytest.approx(3e-3 * (1 + math.cos(math.pi * 4 / 5)) / 2)


def test_a_diverging_update_stops_with_one_line(tmp_path):
    assert _fit(tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                "--trainer.limit_val_batches", "1") == 0
    ckpt = str(tmp_path / "ckpt" / "last.ckpt")
    est = SupernetEstimator(DigitsDataModule(), ckpt, update_steps=5, lr=1e30)
    pop = [random_genome(est.space, np.random.default_rng(i), density=0.3) for i in range(4)]
    with pytest.raises(FloatingPointError, match=r"^supernet update diverged at step [1-5]: loss is (nan|inf); "
                                                 "lower the learning rate$"):
        est.update(pop)
    # one step: only the check after the last step can see it
    with pytest.raises(FloatingPointError, match=r"^supernet update diverged at step 1: loss is (nan|inf)"):
        SupernetEstimator(DigitsDataModule(), ckpt, update_steps=1, lr=1e30).update(pop)
    # fine-tuning that blows up is the candidate's error, not a chance-level score
    tuned = SupernetEstimator(DigitsDataModule(), ckpt, finetune_steps=2, lr=1e30).estimate(pop[:2])
    assert all(not e.ok and e.error.startswith("FloatingPointError: fine-tuning diverged") for e in tuned), tuned
    with pytest.raises(ValueError, match="device 'cpux'"):
        SupernetEstimator(DigitsDataModule(), ckpt, device="cpux")


@pytest.mark.parametrize("extra, message", [
    (["--model.levels", "0"], "levels 0: the genome samplers need a space with at least one hidden level"),
    (["--model.lr", "-1"], "LazyAdam: lr -1.0"),
])
def test_bad_model_settings_end_in_one_line(tmp_path, capsys, extra, message):
    assert _fit(tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_damaged_checkpoints_end_in_one_line(tmp_path, capsys):
    assert _fit(tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                "--trainer.limit_val_batches", "1") == 0
    last = tmp_path / "ckpt" / "last.ckpt"
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(last.read_bytes()[:5000])
    with pytest.raises(ValueError, match=f"supernet checkpoint {cut} cannot be read"):
        SupernetEstimator(DigitsDataModule(), str(cut))
    with pytest.raises(ValueError, match=f"supernet checkpoint {tmp_path} is a directory"):
        SupernetEstimator(DigitsDataModule(), str(tmp_path))
    assert cli(["validate", "--config", str(REPO / "configs/oneshot/digits.yaml"), "--trainer.logger", "false",
                "--trainer.default_root_dir", str(tmp_path), "--model.width", "16", "--ckpt_path", str(cut)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"checkpoint {cut} cannot be read" in err[0]


def test_resume_with_a_replaced_supernet_checkpoint_is_one_line(tmp_path, capsys):
    """The search config names the checkpoint by path: a file replaced by another grid's must not
    end in a size-mismatch traceback halfway through restoring the search."""
    from evolution.__main__ import main as evolution_cli

    one = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]
    assert _fit(tmp_path / "a", *one) == 0 and _fit(tmp_path / "b", *one, "--model.width", "8") == 0
    ckpt, run = tmp_path / "a" / "ckpt" / "last.ckpt", tmp_path / "run"
    assert evolution_cli(["search", "--config", str(REPO / "configs/search/digits-supernet.yaml"), "--search.width", "16",
                          "--estimator.init_args.checkpoint", str(ckpt), "--population", "4", "--children", "2",
                          "--iterations", "1", "--search.progress", "false", "--run_dir", str(run)]) == 0
    hist = (run / "history.jsonl").read_bytes()
    ckpt.write_bytes((tmp_path / "b" / "ckpt" / "last.ckpt").read_bytes())
    assert evolution_cli(["search", "--resume", str(run), "--iterations", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit the estimator (was its checkpoint file replaced" in err[0], err
    assert (run / "history.jsonl").read_bytes() == hist


def test_lazy_adam_is_adam_on_touched_rows_and_frozen_elsewhere():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(6, 2))
    b = torch.nn.Parameter(a.detach().clone())
    lazy, adam = LazyAdam([a], lr=0.1), torch.optim.Adam([b], lr=0.1)
    for _ in range(3):
        g = torch.randn(6, 2)
        a.grad, b.grad = g.clone(), g.clone()
        lazy.step()
        adam.step()
    assert torch.allclose(a, b, atol=1e-6)
    frozen = a.detach().clone()
    a.grad = torch.zeros(6, 2)
    a.grad[2] = 1.0
    lazy.step()
    changed = (a.detach() != frozen).any(1)
    assert changed.tolist() == [False, False, True, False, False, False]


def test_same_seed_same_genomes_and_bank():
    data = DigitsDataModule()
    a = SupernetModule(data.input_shape, data.num_classes, levels=2, width=16, sampler="sandwich", seed=3)
    b = SupernetModule(data.input_shape, data.num_classes, levels=2, width=16, sampler="sandwich", seed=3)
    c = SupernetModule(data.input_shape, data.num_classes, levels=2, width=16, sampler="sandwich", seed=4)
    ga, gb, gc = (m.sampler.sample(m.rng, 4) for m in (a, b, c))
    assert all(np.array_equal(x.edges, y.edges) for x, y in zip(ga, gb))
    assert not all(np.array_equal(x.edges, y.edges) for x, y in zip(ga[2:], gc[2:]))
    assert torch.equal(a.supernet.bank, b.supernet.bank)


def test_few_shot_routes_each_depth_to_its_own_bank():
    from oneshot.supernet import FewShotSupernet

    space = SearchSpace((1, 8, 8), 10, levels=2, width=16)
    sup = FewShotSupernet(space, torch.Generator().manual_seed(0))
    one = random_genome(space, np.random.default_rng(0), density=0.3, n_levels=1)
    two = random_genome(space, np.random.default_rng(1), density=0.3, n_levels=2)
    assert sup.bank_for(one) is sup.banks[1] and sup.bank_for(two) is sup.banks[2]
    opt = LazyAdam(list(sup.parameters()), lr=1e-2, rows=sup.touched_rows)
    before = [b.bank.detach().clone() for b in sup.banks]
    loss = supernet_loss(sup, [one], torch.rand(8, 64), torch.randint(0, 10, (8,)))
    loss.backward()
    opt.step()
    moved = [not torch.equal(b.bank, x) for b, x in zip(sup.banks, before)]
    assert moved == [False, True, False]
    # Only the trained bank may score: the others hold the init (a sampler that never draws their depth).
    assert sup.draws.tolist() == [0, 1, 0]
    sup.check_trained(one)
    with pytest.raises(ValueError, match="the bank for 2 hidden levels was never trained"):
        sup.check_trained(two)
    old = {k: v for k, v in sup.state_dict().items() if k != "draws"}  # a checkpoint from before the count
    fresh = FewShotSupernet(space)
    fresh.load_state_dict(old)
    fresh.check_trained(two)
    supernet_loss(fresh, [two], torch.rand(8, 64), torch.randint(0, 10, (8,)))  # uncounted: stays unknown
    fresh.check_trained(two)
    net = SparseNet(two)
    net.set_weights(sup.weights_for(two))
    x = torch.rand(4, 64)
    assert (sup(two, x) - net(x)).abs().max() <= 1e-6


def test_few_shot_estimator_refuses_depths_its_sampler_never_drew(tmp_path):
    # sandwich draws 1..levels hidden levels: the depth-0 bank (inputs straight to outputs) never trains.
    assert _fit(tmp_path, "--model.few_shot", "true", "--model.sampler", "sandwich", "--trainer.max_epochs", "1",
                "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1") == 0
    est = SupernetEstimator(DigitsDataModule(), str(tmp_path / "ckpt" / "last.ckpt"))
    rng = np.random.default_rng(0)
    linear = random_genome(est.space, rng, density=0.3, n_levels=0)
    deep = random_genome(est.space, rng, density=0.3, n_levels=1)
    bad, good = est.estimate([linear, deep])
    assert not bad.ok and "the bank for 0 hidden levels was never trained" in bad.error
    assert good.ok and 0 <= good.score <= 1
    with pytest.raises(ValueError, match="never trained"):
        est.initialize(linear)


def test_batched_scores_updates_and_steps_equal_the_per_genome_path(tmp_path):
    assert _fit(tmp_path, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3") == 0
    data, ckpt = DigitsDataModule(), str(tmp_path / "ckpt" / "last.ckpt")
    for readout in (0, 300):
        one = SupernetEstimator(data, ckpt, readout=readout, batched=False, update_steps=4, seed=3)
        many = SupernetEstimator(data, ckpt, readout=readout, batched=True, update_steps=4, seed=3)
        assert many.batched and not one.batched
        pop = [random_genome(one.space, np.random.default_rng(i), density=d)
               for i, d in enumerate([0.05, 0.2, 0.4, 0.6] * 5)]  # 20: more than one pass of 16
        a, b = [e.score for e in one.estimate(pop)], [e.score for e in many.estimate(pop)]
        assert np.abs(np.array(a) - np.array(b)).max() <= 1 / len(data.tensors("val")[1])  # a tie's argmax at most
        assert len(set(a)) > 3
    one.update(pop)
    many.update(pop)
    for p, q in zip(one.supernet.parameters(), many.supernet.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    # a module trains its step's genomes in one pass with the same loss
    module = SupernetModule((1, 8, 8), 10, levels=3, width=16, batched=True, sampler="sandwich")
    assert module.batched and not SupernetModule((1, 8, 8), 10, levels=3, width=16).batched  # default: CPU -> off
    assert not SupernetEstimator(data, ckpt).batched
    x, y = data.tensors("train")
    genomes = module.sampler.sample(np.random.default_rng(0), 4)
    torch.testing.assert_close(supernet_loss(module.supernet, genomes, x[:64], y[:64], distill=True, batched=True),
                               supernet_loss(module.supernet, genomes, x[:64], y[:64], distill=True))
