"""TokenFusion's optimiser recipe: AdamW in three param groups (encoder, the encoder's norms without weight decay,
the decoder), a new ``PolyWarmupAdamW`` per stage of the learning-rate list; checked against the reference's own
optimiser, and that a checkpointed optimiser resumes the warm-up where it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from train_configs import config_tree

from fusionlab.config import TrainConfig
from fusionlab.train.optim import before_step, build_optimizer, poly_warmup_factor, set_epoch_lr
from fusionlab.train.prepare import parse_config


class ReferencePolyWarmupAdamW(torch.optim.AdamW):
    """yikaiw/TokenFusion ``semantic_segmentation/utils/optimizer.py``, as written there (the oracle)."""

    def __init__(self, params, lr, weight_decay, betas, warmup_iter, max_iter, warmup_ratio, power):
        super().__init__(params, lr=lr, betas=betas, weight_decay=weight_decay, eps=1e-8)
        self.global_step, self.warmup_iter, self.warmup_ratio = 0, warmup_iter, warmup_ratio
        self.max_iter, self.power = max_iter, power
        self.init_lr = [group["lr"] for group in self.param_groups]

    def step(self, closure=None):
        if self.global_step < self.warmup_iter:
            lr_mult = 1 - (1 - self.global_step / self.warmup_iter) * (1 - self.warmup_ratio)
            for i in range(len(self.param_groups)):
                self.param_groups[i]["lr"] = self.init_lr[i] * lr_mult
        elif self.global_step < self.max_iter:
            lr_mult = (1 - self.global_step / self.max_iter) ** self.power
            for i in range(len(self.param_groups)):
                self.param_groups[i]["lr"] = self.init_lr[i] * lr_mult
        super().step(closure)
        self.global_step += 1


class NamedNorm(nn.Module):
    """An encoder whose LayerNorm's parameter names carry "norm", as the reference's split reads them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.ModuleDict({"proj": nn.Linear(4, 6), "norm1": nn.LayerNorm(6)})
        self.decoder = nn.Linear(6, 2)

    def forward(self, x):
        return self.decoder(self.encoder["norm1"](self.encoder["proj"](x)))


LRS = [6e-3, 3e-3, 1.5e-3]
EPOCHS, STEPS = 6, 8  # two epochs per stage, 16 steps per stage: warm-up, decay and past max_iters
SCHEDULE = {"type": "poly_warmup", "warmup_iters": 5, "warmup_ratio": 1e-6, "max_iters": 12, "power": 1.0}


def train_config(**changes) -> TrainConfig:
    fields = {"epochs": EPOCHS, "optimizer": "adamw", "lr_encoder": LRS, "lr_decoder": [lr * 10 for lr in LRS],
              "weight_decay": 0.01, "norm_weight_decay": 0.0, "restart_each_stage": True, "lr_schedule": SCHEDULE,
              **changes}
    return TrainConfig.model_validate(fields)


def batches():
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(3, 4, generator=generator) for _ in range(EPOCHS * STEPS)]


def step(model, optimizer, x):
    optimizer.zero_grad()
    model(x).square().mean().backward()


def fusionlab_run(config: TrainConfig, epochs=range(EPOCHS), model=None, optimizer=None):
    model = model or NamedNorm()
    optimizer = optimizer or build_optimizer(model, config)
    data, lrs = batches(), []
    for epoch in epochs:
        set_epoch_lr(optimizer, config, epoch)
        for x in data[epoch * STEPS:(epoch + 1) * STEPS]:
            step(model, optimizer, x)
            before_step(optimizer, config)
            lrs.append([group["lr"] for group in optimizer.param_groups])
            optimizer.step()
    return model, optimizer, lrs


def reference_run():
    model = NamedNorm()
    data, lrs = batches(), []
    for stage, lr in enumerate(LRS):
        norm = [p for name, p in model.encoder.named_parameters() if "norm" in name]
        other = [p for name, p in model.encoder.named_parameters() if "norm" not in name]
        optimizer = ReferencePolyWarmupAdamW(
            [{"params": other, "lr": lr, "weight_decay": 0.01}, {"params": norm, "lr": lr, "weight_decay": 0.0},
             {"params": list(model.decoder.parameters()), "lr": lr * 10, "weight_decay": 0.01}],
            lr=lr, weight_decay=0.01, betas=[0.9, 0.999], warmup_iter=5, max_iter=12, warmup_ratio=1e-6, power=1.0)
        for x in data[stage * 2 * STEPS:(stage + 1) * 2 * STEPS]:
            step(model, optimizer, x)
            optimizer.step()
            lrs.append([group["lr"] for group in optimizer.param_groups])
    return model, lrs


def test_the_stages_of_poly_warmup_adamw_train_as_the_references_new_optimiser_per_stage():
    ours, _, our_lrs = fusionlab_run(train_config())
    theirs, their_lrs = reference_run()
    assert len(our_lrs) == len(their_lrs) == EPOCHS * STEPS
    for ours_now, theirs_now in zip(our_lrs, their_lrs, strict=True):
        assert ours_now == pytest.approx(theirs_now, rel=1e-12)
    for (name, mine), (_, reference) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-6, atol=1e-7, msg=name)


def test_the_warm_up_rises_then_decays_and_holds_after_max_iters():
    schedule = train_config().lr_schedule
    factors = [poly_warmup_factor(schedule, s) for s in range(16)]
    assert factors[0] == pytest.approx(1e-6) and factors[4] == pytest.approx(1 - 0.2 * (1 - 1e-6))
    assert factors[5] == pytest.approx(1 - 5 / 12)
    assert all(a > b for a, b in zip(factors[5:11], factors[6:12], strict=True))
    assert factors[12:] == [factors[11]] * 4


def test_the_encoders_norms_have_their_own_weight_decay_and_the_encoders_rate():
    optimizer = build_optimizer(NamedNorm(), train_config())
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert [len(groups[name]["params"]) for name in ("encoder", "encoder_norm", "decoder")] == [2, 2, 2]
    assert groups["encoder_norm"]["weight_decay"] == 0.0 and groups["encoder"]["weight_decay"] == 0.01
    assert groups["encoder_norm"]["stage_lr"] == LRS[0] and groups["decoder"]["stage_lr"] == LRS[0] * 10
    plain = build_optimizer(NamedNorm(), train_config(norm_weight_decay=None))
    assert [group["name"] for group in plain.param_groups] == ["encoder", "decoder"]


@pytest.mark.parametrize("restart", [True, False])
def test_a_new_stage_restarts_the_optimiser_state_only_when_asked(restart):
    config = train_config(restart_each_stage=restart)
    model, optimizer, _ = fusionlab_run(config, epochs=range(3))  # stage 0 (epochs 0, 1), one epoch of stage 1
    adam_steps = {int(optimizer.state[p]["step"]) for p in model.parameters()}
    assert adam_steps == ({STEPS} if restart else {3 * STEPS})
    assert {group["stage"] for group in optimizer.param_groups} == {1}
    assert {group["stage_step"] for group in optimizer.param_groups} == {STEPS}


def test_a_checkpointed_optimiser_resumes_the_stage_and_its_warm_up():
    config = train_config()
    whole, _, whole_lrs = fusionlab_run(config)
    model, optimizer, first_lrs = fusionlab_run(config, epochs=range(3))
    saved = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    resumed_model = NamedNorm()
    resumed_model.load_state_dict(saved["model"])
    resumed = build_optimizer(resumed_model, config)
    resumed.load_state_dict(saved["optimizer"])
    resumed_model, _, rest_lrs = fusionlab_run(config, epochs=range(3, EPOCHS), model=resumed_model,
                                               optimizer=resumed)
    assert first_lrs + rest_lrs == whole_lrs
    for (name, mine), (_, reference) in zip(resumed_model.named_parameters(), whole.named_parameters(), strict=True):
        torch.testing.assert_close(mine, reference, msg=name)


def test_a_training_epoch_advances_the_schedule_once_per_step(small_synthetic, tmp_path):
    """Through the one loop: a TokenFusion run's checkpointed optimiser has counted every step of its epoch."""
    from fusionlab.train.checkpoint import load_checkpoint
    from fusionlab.train.driver import run_local

    config = parse_config(config_tree(small_synthetic, model={"name": "tokenfusion", "backbone": "mit_mini"},
                                      train={"epochs": 1, "batch_size": 8, "optimizer": "adamw",
                                             "norm_weight_decay": 0.0,
                                             "lr_schedule": {"type": "poly_warmup", "warmup_iters": 100}}))
    run_local(config, tmp_path)
    (checkpoint,) = sorted(tmp_path.rglob("epoch_0000"))
    groups = load_checkpoint(checkpoint)["optimizer"]["param_groups"]
    steps = 32 // 8  # small_synthetic: 32 training images
    assert [group["stage_step"] for group in groups] == [steps] * 3
    expected = 1e-3 * poly_warmup_factor(config.train.lr_schedule, steps - 1)
    assert groups[0]["lr"] == pytest.approx(expected)
