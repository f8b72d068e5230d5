"""ModalBatchNorm2d's sliced execution (one output, no torch.cat) equals one nn.BatchNorm2d per modality slice."""

import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode

from fusionlab.models import ModalBatchNorm2d, build, set_batchnorm_implementation

EXACT = {"rtol": 1e-6, "atol": 1e-6}


def per_slice(bns: nn.ModuleList, x: torch.Tensor, num_modalities: int, shared: bool) -> torch.Tensor:
    """The definition: chunk the stacked batch, one BatchNorm2d call per modality slice, concatenate."""
    return torch.cat([bns[0 if shared else m](part) for m, part in enumerate(x.chunk(num_modalities))])


def randomise(layer: ModalBatchNorm2d) -> None:
    with torch.no_grad():
        for bn in layer.bns:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("shared", [False, True], ids=["per_modality", "shared"])
@pytest.mark.parametrize("num_modalities", [2, 3])
def test_sliced_equals_per_slice_batchnorm(num_modalities, shared, channels_last, momentum):
    torch.manual_seed(0)
    layer = ModalBatchNorm2d(6, num_modalities, shared=shared)
    randomise(layer)
    for bn in layer.bns:
        bn.momentum = momentum
    reference = copy.deepcopy(layer.bns)
    assert layer.implementation == "cat"  # the default; "sliced" is opt-in
    layer.implementation = "sliced"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    for step in range(4):
        training = step < 3  # three training steps (running statistics move), then eval (they are used)
        layer.train(training)
        reference.train(training)
        # each modality its own offset and scale, so per-slice statistics differ from whole-batch ones
        offsets = torch.arange(num_modalities, dtype=torch.float32).repeat_interleave(2).view(-1, 1, 1, 1)
        x = (torch.randn(num_modalities * 2, 6, 5, 7) * (1 + offsets) + 3 * offsets).to(memory_format=memory_format)
        weights = torch.randn_like(x)
        results = []
        def definition(t):
            return per_slice(reference, t, num_modalities, shared)

        for forward, params in ((layer, list(layer.parameters())), (definition, list(reference.parameters()))):
            inp = x.clone().requires_grad_()
            out = forward(inp)
            (out * weights).sum().backward()
            results.append([out.detach(), inp.grad] + [p.grad.clone() for p in params])
            for p in params:
                p.grad = None
        for ours, theirs in zip(results[0], results[1], strict=True):
            assert_close(ours, theirs, **EXACT)
        for ours, theirs in zip(layer.bns, reference, strict=True):
            assert_close(ours.running_mean, theirs.running_mean, **EXACT)
            assert_close(ours.running_var, theirs.running_var, **EXACT)
            assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item()
    # shared: the single BN is updated once per modality slice and step, as the per-slice calls do
    assert layer.bns[0].num_batches_tracked.item() == 3 * (num_modalities if shared else 1)


@pytest.mark.parametrize("frozen", ["input", "parameters"])
def test_gradients_when_only_some_inputs_need_them(frozen):
    torch.manual_seed(0)
    layer = ModalBatchNorm2d(3, 2)
    randomise(layer)
    reference = copy.deepcopy(layer)
    layer.implementation = "sliced"
    x = torch.randn(4, 3, 5, 5, requires_grad=frozen == "parameters")
    for module in (layer, reference):
        module.requires_grad_(frozen == "input")
        module(x).square().sum().backward()
    if frozen == "input":
        for ours, theirs in zip(layer.parameters(), reference.parameters(), strict=True):
            assert_close(ours.grad, theirs.grad, **EXACT)
    else:
        grads = [torch.autograd.grad(module(x).square().sum(), x)[0] for module in (layer, reference)]
        assert_close(grads[0], grads[1], **EXACT)


def test_state_dict_keys_unchanged():
    layer = ModalBatchNorm2d(4, 2)
    assert list(layer.state_dict()) == [f"bns.{m}.{name}" for m in range(2) for name in
                                        ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


class AtenOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("implementation", ["sliced", "cat"])
def test_sliced_runs_no_concatenation(implementation):
    """The point of "sliced": no aten.cat in the forward (the output) nor in the backward (chunk's backward
    concatenates the slices' input gradients). "cat" is the check that the probe does see one."""
    layer = ModalBatchNorm2d(4, 3)
    layer.implementation = implementation
    x = torch.randn(6, 4, 3, 3, requires_grad=True)
    with AtenOps() as probe:
        layer(x).square().sum().backward()
    assert ("cat" in probe.ops) == (implementation == "cat"), sorted(probe.ops)
    if implementation == "sliced":
        assert "native_batch_norm" in probe.ops and "native_batch_norm_backward" in probe.ops


def test_falls_back_to_cat_where_sliced_does_not_apply():
    layer = ModalBatchNorm2d(4, 2).double()
    layer.implementation = "sliced"
    x = torch.randn(4, 4, 3, 3, dtype=torch.float64)
    with AtenOps() as probe:
        layer(x)
    assert "cat" not in probe.ops  # float64 is sliced
    with AtenOps() as probe, torch.autocast("cpu", dtype=torch.bfloat16):
        layer.float()(x.float().bfloat16())
    assert "cat" in probe.ops  # bf16 input, float32 weights: the original execution


def test_unknown_implementation_is_refused():
    model = nn.Sequential(ModalBatchNorm2d(4, 2))
    with pytest.raises(ValueError, match="implementation"):
        set_batchnorm_implementation(model, "fused")


@pytest.mark.parametrize("name", ["cen", "asymfusion", "shared_bn"])
def test_whole_model_sliced_equals_cat(name):
    """A whole network, train step then eval: outputs, every parameter gradient and every running statistic."""
    torch.manual_seed(0)
    model = build(name, backbone="resnet_mini", num_classes=4, modalities=["rgb", "depth", "hha"])
    start = copy.deepcopy(model.state_dict())
    x = torch.randn(3, 2, 3, 32, 32)
    results = []
    for implementation in ("sliced", "cat"):
        model.load_state_dict(start)
        set_batchnorm_implementation(model, implementation)
        model.train()
        model.zero_grad()
        torch.manual_seed(1)  # same dropout masks
        out = model(x)
        (out.branches.square().mean() + out.ensemble.square().mean()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.eval()
        with torch.no_grad():
            evaluated = model(x).branches
        results.append((out.branches.detach(), grads, copy.deepcopy(model.state_dict()), evaluated))
    (out_s, grads_s, state_s, eval_s), (out_c, grads_c, state_c, eval_c) = results
    assert_close(out_s, out_c, **EXACT)
    assert grads_s.keys() == grads_c.keys()
    for key in grads_s:
        assert_close(grads_s[key], grads_c[key], rtol=1e-5, atol=1e-6, msg=key)
    assert state_s.keys() == state_c.keys()
    for key in state_s:
        assert_close(state_s[key], state_c[key], **EXACT, msg=key)
    assert_close(eval_s, eval_c, **EXACT)
