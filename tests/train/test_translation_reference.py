"""The translation objective against the CEN translation reference (yikaiw/CEN image2image_translation/main.py),
re-written here: one training step (M = 2, CEN, per-branch discriminator), same weights and inputs, the reference's
D loss, G loss, gradients and updated weights against fusionlab's ``train_epoch``.

The reference's ``Discriminator`` (models/model.py) is re-written too and given fusionlab's weights, so its
decisions are the reference network's. The generator is fusionlab's in both (its parity with the reference's
``Generator`` is the models' tests' business), with dropout at p = 0: the reference runs the generator twice per
step (once for D, once for G), which with dropout draws two masks fusionlab's one forward cannot reproduce.
"""

import contextlib
import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fusionlab.config import validate_config
from fusionlab.data.manifest import Manifest, ModalitySpec
from fusionlab.train.optim import build_optimizer
from fusionlab.train.translation import train_epoch
from fusionlab.train.translation_task import build_pair, discriminator_optimizer

M, B, SIZE = 2, 2, 32
TANH = ModalitySpec("uint8", 3, scale=1 / 255, mean=(0.5,) * 3, std=(0.5,) * 3)  # served values are the tanh range
GAMA, LAMDA = 100.0, 1e-3  # main.py's --gama and --lamda defaults


def reference_config(**gan):
    return validate_config({
        "recipe": "reference",
        "data": {"path": "unused", "modalities": ["reshading", "edge_texture"], "min_short_side": None},
        "model": {"name": "cen", "backbone": "unet_mini",
                  "params": {"lambda": LAMDA, "threshold": 1e-2, "penalty": "once", "sparsity": "loss"}},
        "train": {"optimizer": "adam", "lr_encoder": 2e-4, "lr_decoder": 2e-4, "betas": [0.5, 0.999],
                  "weight_decay": 0.0, "channels_last": False, "fused": False,
                  "gan": {"l1_weight": GAMA, "lr_discriminator": 2e-4, **gan}},
    })


MANIFEST = Manifest(name="tiny", task="translation", target="rgb",
                    modalities={"reshading": TANH, "edge_texture": TANH, "rgb": TANH})


# -- the reference's Discriminator (models/model.py, models/modules.py), written out ------------------------------
class ModuleParallel(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x_parallel):
        return [self.module(x) for x in x_parallel]


class ConvBlockShare(nn.Module):
    def __init__(self, input_size, output_size, kernel_size=4, stride=2, padding=1, activation=True,
                 instance_norm=True):
        super().__init__()
        self.conv = ModuleParallel(nn.Conv2d(input_size, output_size, kernel_size, stride, padding))
        self.activation = activation
        self.lrelu = ModuleParallel(nn.LeakyReLU(0.2, True))
        self.instance_norm = instance_norm
        self.insnorm = ModuleParallel(nn.InstanceNorm2d(output_size, affine=True, track_running_stats=True))

    def forward(self, x):
        out = self.conv(self.lrelu(x)) if self.activation else self.conv(x)
        return self.insnorm(out) if self.instance_norm else out


class ReferenceDiscriminator(nn.Module):
    def __init__(self, input_dim, num_filter, output_dim):
        super().__init__()
        self.conv1 = ConvBlockShare(input_dim, num_filter, activation=False, instance_norm=False)
        self.conv2 = ConvBlockShare(num_filter, num_filter * 2)
        self.conv3 = ConvBlockShare(num_filter * 2, num_filter * 4)
        self.conv4 = ConvBlockShare(num_filter * 4, num_filter * 8, stride=1)
        self.conv5 = ConvBlockShare(num_filter * 8, output_dim, stride=1, instance_norm=False)
        self.sigmoid = ModuleParallel(nn.Sigmoid())

    def forward(self, x, label):
        if isinstance(label, list):
            # the reference zips M inputs with M + 1 outputs: the ensemble drops out
            x = [torch.cat([x_, label_], 1) for (x_, label_) in zip(x, label, strict=False)]
        else:
            x = [torch.cat([x_, label], 1) for x_ in x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            x = conv(x)
        return self.sigmoid(x)


def reference_names(base_state: dict) -> dict[str, str]:
    """The reference's parameter names -> fusionlab's per-branch discriminator's (its Sequential indices)."""
    convs = {"conv1": 0, "conv2": 2, "conv3": 5, "conv4": 8, "conv5": 11}
    norms = {"conv2": 3, "conv3": 6, "conv4": 9}
    names = {f"{name}.conv.module.{kind}": f"model.{index}.{kind}"
             for name, index in convs.items() for kind in ("weight", "bias")}
    names.update({f"{name}.insnorm.module.{kind}": f"model.{index}.{kind}"
                  for name, index in norms.items() for kind in ("weight", "bias")})
    assert set(names.values()) == set(base_state), "every fusionlab parameter has its reference counterpart"
    return names


def reference_from(discriminator: nn.Module, base: int) -> ReferenceDiscriminator:
    """The reference network holding fusionlab's per-branch discriminator's weights."""
    reference = ReferenceDiscriminator(6, base, 1)
    state = discriminator.state_dict()
    mapped = {ref: state[ours] for ref, ours in reference_names(state).items()}
    missing, unexpected = reference.load_state_dict(mapped, strict=False)
    assert not unexpected and all(unused(key) for key in missing), missing
    return reference


def unused(key: str) -> bool:
    """Reference state with no fusionlab counterpart: running statistics (never used: D is never in eval mode) and
    the norms ConvBlockShare builds for conv1 and conv5 although they have instance_norm=False."""
    return "running" in key or "num_batches" in key or key.startswith(("conv1.insnorm", "conv5.insnorm"))


# -- the fixed starting point --------------------------------------------------------------------------------------
def models_and_batch(config):
    torch.manual_seed(0)
    generator, discriminator = build_pair(config, MANIFEST)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
        for name, param in generator.named_parameters():
            if ".norm" in name:  # some gammas below the threshold: channels are exchanged
                param.copy_(torch.empty_like(param).uniform_(-0.05, 1.5) if name.endswith("weight")
                            else torch.randn_like(param) * 0.1)
        generator.alpha.copy_(torch.tensor([0.3, -0.2]))
        for module in discriminator.modules():
            if isinstance(module, nn.InstanceNorm2d) and module.affine:
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
            if isinstance(module, nn.Conv2d):
                module.bias.normal_(0, 0.02)
    batch = {"image": torch.rand(B, M, 3, SIZE, SIZE) * 2 - 1, "target": torch.rand(B, 3, SIZE, SIZE) * 2 - 1}
    return generator, discriminator, batch


def fusionlab_step(config, generator, discriminator, batch):
    """``train_epoch`` on the one batch: its epoch means, and D's gradients at its step (``d_step_grads``)."""
    optimizer_d = discriminator_optimizer(discriminator, config)
    d_step_grads = {}
    step = optimizer_d.step

    def recording_step(*args, **kwargs):
        d_step_grads.update({name: p.grad.clone() for name, p in discriminator.named_parameters()})
        return step(*args, **kwargs)

    optimizer_d.step = recording_step
    ctx = SimpleNamespace(device=torch.device("cpu"), all_reduce_sum=lambda tensor: tensor)
    metrics = train_epoch(generator, discriminator, [batch], (build_optimizer(generator, config.train), optimizer_d),
                          config, ctx, TANH, 0, autocast=contextlib.nullcontext, after_generator_step=lambda: None)
    return {**metrics, "d_step_grads": d_step_grads}


def reference_step(generator, discriminator, batch, base):
    """main.py's training loop body, verbatim but for .cuda() and G/D's construction."""
    G = generator
    D = reference_from(discriminator, base)

    def G_forward(x_):  # Generator.forward: (branch outputs + [ensemble], alpha_soft)
        output = G(torch.stack(x_))
        return [*output.branches, output.ensemble], F.softmax(G.alpha, dim=0)

    slim_params = []  # main.py: the exchanging ConvBlocks' insnorm_conv weights, halves alternating by branch
    for name, param in G.named_parameters():
        if param.requires_grad and name.endswith("weight") and name.startswith("encoder.down") and ".norm." in name:
            if len(slim_params) % 2 == 0:
                slim_params.append(param[:len(param) // 2])
            else:
                slim_params.append(param[len(param) // 2:])
    assert len(slim_params) == 2 * 3, "unet_mini: down2..down4 exchange, two branches each"

    BCE_loss, L1_loss = torch.nn.BCELoss(), torch.nn.L1Loss()
    G_optimizer = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    D_optimizer = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    slim_penalty = lambda var: torch.abs(var).sum()  # noqa: E731

    x_ = list(batch["image"].transpose(0, 1))
    y_ = batch["target"]

    D_real_decisions = D(x_, y_)
    D_real_decisions = [D_real_decision.squeeze() for D_real_decision in D_real_decisions]
    real_ = torch.ones(D_real_decisions[0].size())
    D_real_losses = [BCE_loss(D_real_decision, real_) for D_real_decision in D_real_decisions]

    gen_images, _ = G_forward(x_)
    D_fake_decisions = D(x_, gen_images)
    D_fake_decisions = [D_fake_decision.squeeze() for D_fake_decision in D_fake_decisions]
    fake_ = torch.zeros(D_fake_decisions[0].size())
    D_fake_losses = [BCE_loss(D_fake_decision, fake_) for D_fake_decision in D_fake_decisions]

    D_loss = sum([(D_real_loss + D_fake_loss) * 0.5 for (D_real_loss, D_fake_loss)
                  in zip(D_real_losses, D_fake_losses, strict=True)])
    D.zero_grad()
    D_loss.backward()
    d_step_grads = {name: p.grad.clone() for name, p in D.named_parameters() if p.grad is not None}
    D_optimizer.step()

    gen_images, _ = G_forward(x_)
    D_fake_decisions = D(x_, gen_images)
    D_fake_decisions = [D_fake_decision.squeeze() for D_fake_decision in D_fake_decisions]
    G_fake_loss = sum([BCE_loss(D_fake_decision, real_) for D_fake_decision in D_fake_decisions])

    l1_loss = GAMA * sum([L1_loss(gen_image, y_) for gen_image in gen_images])
    slim_loss = LAMDA * sum([slim_penalty(m) for m in slim_params])

    G_loss = G_fake_loss + l1_loss + slim_loss
    G.zero_grad()
    G_loss.backward()
    G_optimizer.step()
    return {"D_loss": D_loss.item(), "G_loss": G_loss.item(), "G_fake_loss": G_fake_loss.item(),
            "l1_loss": l1_loss.item(), "D": D, "judged": len(D_fake_decisions), "d_step_grads": d_step_grads}


def test_one_step_matches_the_reference_losses_gradients_and_weights():
    config = reference_config()
    assert config.train.gan.discriminators == "per_branch"
    generator, discriminator, batch = models_and_batch(config)
    assert discriminator.model[0].in_channels == 3 + 3, "one branch's input beside the image"
    ref_g, ref_d = copy.deepcopy(generator), copy.deepcopy(discriminator)

    ours = fusionlab_step(config, generator, discriminator, batch)
    reference = reference_step(ref_g, ref_d, batch, config.train.gan.discriminator_filters)

    assert reference["judged"] == M, "zip(x_, gen_images) drops the ensemble from the adversarial terms"
    assert ours["train/discriminator"] == pytest.approx(reference["D_loss"], rel=1e-6, abs=1e-6)
    assert ours["train/loss"] == pytest.approx(reference["G_loss"], rel=1e-6, abs=1e-6)
    assert ours["train/gan"] * M == pytest.approx(reference["G_fake_loss"], rel=1e-6, abs=1e-6)
    l1_outputs = (M * ours["train/l1_branches"] + ours["train/l1"]) * GAMA
    assert l1_outputs == pytest.approx(reference["l1_loss"], rel=1e-6, abs=1e-6), "L1 on every output"

    # The same gradients (D's include the G step's backward through it, in both) and so the same Adam steps.
    # Adam's first step is about lr * sign(grad): entries whose gradient is float noise (below 1e-5; e.g. a conv
    # bias right before an InstanceNorm, which cancels it) may step either way, so only the others are compared.
    for (name, ours_p), ref_p in zip(generator.named_parameters(), ref_g.parameters(), strict=True):
        assert ref_p.grad is not None and ours_p.grad is not None, name
        torch.testing.assert_close(ours_p.grad, ref_p.grad, rtol=1e-4, atol=1e-5, msg=name)
        clear = ref_p.grad.abs() > 1e-5
        torch.testing.assert_close(ours_p[clear], ref_p[clear], rtol=1e-5, atol=1e-7, msg=name)
    assert generator.alpha.grad.abs().sum() > 0, "the ensemble's L1 trains alpha"
    ours_d = dict(discriminator.named_parameters())
    for ref_name, ref_p in reference["D"].named_parameters():
        if unused(ref_name):
            continue
        name = reference_names(ours_d)[ref_name]
        ref_grad = reference["d_step_grads"][ref_name]
        torch.testing.assert_close(ours["d_step_grads"][name], ref_grad, rtol=1e-4, atol=1e-5, msg=ref_name)
        # The G step's gradient reaching D: sums over every pixel of both images, whose float32 rounding depends on
        # the CPU's kernels (one entry of 6144 differed by 1.2e-5 on an AVX2 EPYC): tolerance relative to its scale.
        scale = float(ref_p.grad.abs().max())
        torch.testing.assert_close(ours_d[name].grad, ref_p.grad, rtol=1e-4, atol=max(1e-5, 1e-3 * scale),
                                   msg=lambda text, ref_name=ref_name: f"{ref_name}: {text}")
        clear = ref_grad.abs() > 1e-5
        torch.testing.assert_close(ours_d[name][clear], ref_p[clear], rtol=1e-5, atol=1e-7, msg=ref_name)


def test_the_reference_discriminator_decides_as_the_per_branch_patchgan():
    config = reference_config()
    _, discriminator, batch = models_and_batch(config)
    reference = reference_from(discriminator, config.train.gan.discriminator_filters)
    inputs, image = list(batch["image"].transpose(0, 1)), batch["target"]
    with torch.no_grad():
        decisions = reference(inputs, image)
        ours = torch.sigmoid(discriminator(torch.cat([torch.cat([x, image], 1) for x in inputs])))
    torch.testing.assert_close(torch.cat(decisions), ours, rtol=1e-5, atol=1e-6)


def test_shared_discriminators_keep_fusionlabs_objective():
    """``shared``: D on (all inputs, image) for every output and the ensemble, 0.5 * (real + mean of fakes)."""
    config = reference_config(discriminators="shared")
    generator, discriminator, batch = models_and_batch(config)
    assert discriminator.model[0].in_channels == M * 3 + 3
    core, disc = copy.deepcopy(generator), copy.deepcopy(discriminator)
    ours = fusionlab_step(config, generator, discriminator, batch)

    inputs = batch["image"].transpose(0, 1)
    condition = inputs.transpose(0, 1).flatten(1, 2)
    with torch.no_grad():
        output = core(inputs)
        outputs = [*output.branches, output.ensemble]
        real = disc(torch.cat([condition, batch["target"]], 1))
        fakes = [disc(torch.cat([condition, o], 1)) for o in outputs]
    d_loss = 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                    + sum(F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)) for f in fakes) / len(fakes))
    assert ours["train/discriminator"] == pytest.approx(d_loss.item(), rel=1e-6, abs=1e-6)
    assert math.isfinite(ours["train/gan"])
