"""The fusion ops: the contract of docs/ops.md, checked for every registered op.

Tests parametrised over ``list_ops()`` cover a newly registered op without any change here.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasfuse import create_op, list_ops
from nasfuse.cli import main
from nasfuse.ops import FusionOp, register_op
from nasfuse.profile import count_flops, count_params

ALL_OPS = list_ops()


def make_inputs(
    num_inputs: int, channels: int, batch: int = 2, size: int = 4, seed: int = 0
) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, channels, size, size, generator=generator) for _ in range(num_inputs)
    ]


def randomise(module: nn.Module, seed: int = 0) -> None:
    """Perturb every parameter and BatchNorm statistic, so checks hold for any weights.

    Perturbed rather than redrawn, so activations keep the scale the op's init gives them.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)
        for sub in module.modules():
            if isinstance(sub, nn.BatchNorm2d):
                sub.running_mean.copy_(torch.randn(sub.running_mean.shape, generator=generator))
                sub.running_var.copy_(torch.rand(sub.running_var.shape, generator=generator) + 0.5)


# --- the registry -----------------------------------------------------------------------


def test_list_ops_in_documented_order():
    assert list_ops() == ["add", "concat", "dwff", "aff", "iaff", "cmgm", "dynconv", "pmfs"]


def test_duplicate_registration_is_refused_naming_the_first_registrant():
    with pytest.raises(
        ValueError, match=r"'add' is already registered by nasfuse\.ops\.basic\.Add"
    ):

        @register_op("add")
        class Impostor(FusionOp):
            def fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
                return xs[0]

    assert create_op("add", 4, 2).__class__.__name__ == "Add"
    assert list_ops() == ALL_OPS


def test_unknown_op_and_unknown_option_are_refused():
    with pytest.raises(ValueError, match="unknown fusion op 'sum'"):
        create_op("sum", 8, 2)
    with pytest.raises(ValueError, match="'aff' has no option"):
        create_op("aff", 8, 2, heads=4)


# --- shapes and gradients ------------------------------------------------------------------


@pytest.mark.parametrize("channels", [8, 16, 40, 64, 128])
@pytest.mark.parametrize("num_inputs", [2, 3, 4])
@pytest.mark.parametrize("name", ALL_OPS)
def test_output_has_the_input_shape(name, num_inputs, channels):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every op handles these widths without falling back
        op = create_op(name, channels, num_inputs)
    xs = make_inputs(num_inputs, channels, batch=2, size=4)
    out = op(xs)
    assert out.shape == (2, channels, 4, 4)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("name", ALL_OPS)
def test_output_keeps_the_memory_format_of_the_input(name, memory_format):
    # A channels-last tensor leaking out of an op into a contiguous network reached a
    # oneDNN kernel that corrupts the heap (issue 19, experiments/repro_cmgm_crash.py).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 4 channels: cmgm falls back to 4 heads
        op = create_op(name, 4, 2)
    xs = [x.contiguous(memory_format=memory_format) for x in make_inputs(2, 4, size=4)]
    out = op(xs)
    assert out.is_contiguous(memory_format=memory_format), out.stride()


def test_cmgm_keeps_eight_heads_at_128_channels():
    op = create_op("cmgm", 128, 2, heads=8)
    assert op.heads == 8
    assert op(make_inputs(2, 128, size=3)).shape == (2, 128, 3, 3)


@pytest.mark.parametrize("num_inputs", [2, 3, 4])
@pytest.mark.parametrize("name", ALL_OPS)
def test_every_parameter_gets_a_gradient(name, num_inputs):
    torch.manual_seed(0)
    op = create_op(name, 16, num_inputs).train()
    xs = [x.requires_grad_() for x in make_inputs(num_inputs, 16, batch=4, size=5)]
    op(xs).square().mean().backward()
    for parameter_name, parameter in op.named_parameters():
        assert parameter.grad is not None, f"{name}: {parameter_name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name}: {parameter_name}"
        if parameter.dim() > 1:  # weights; a bias before a BatchNorm has a zero gradient
            assert parameter.grad.abs().sum() > 0, f"{name}: {parameter_name} gradient is zero"
    for x in xs:
        assert x.grad is not None and x.grad.abs().sum() > 0


# --- batch behaviour -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_OPS)
def test_eval_output_of_a_sample_ignores_the_rest_of_the_batch(name):
    torch.manual_seed(0)
    op = create_op(name, 16, 3)
    randomise(op)
    op.eval()
    xs = make_inputs(3, 16, batch=3, size=4, seed=1)
    with torch.no_grad():
        together = op(xs)
        for index in range(3):
            alone = op([x[index : index + 1] for x in xs])  # batch size 1 works
            torch.testing.assert_close(alone[0], together[index], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ALL_OPS)
def test_training_with_batch_size_one_is_clear(name):
    op = create_op(name, 8, 2).train()
    xs = make_inputs(2, 8, batch=1, size=4)
    if op.pooled_batchnorm:
        with pytest.raises(
            ValueError, match=rf"^{name}: cannot train with batch size 1.*\(1, 8, 4, 4\)"
        ):
            op(xs)
    else:
        assert op(xs).shape == (1, 8, 4, 4)
    assert op.eval()(xs).shape == (1, 8, 4, 4)


# --- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_OPS)
def test_mismatched_shapes_are_refused_naming_op_and_shapes(name):
    op = create_op(name, 8, 2)
    xs = [torch.randn(2, 8, 4, 4), torch.randn(2, 8, 5, 4)]
    with pytest.raises(
        ValueError, match=rf"^{name}: .*\(B, 8, H, W\).*\(2, 8, 4, 4\), \(2, 8, 5, 4\)"
    ):
        op(xs)
    with pytest.raises(ValueError, match=rf"^{name}: .*\(2, 9, 4, 4\)"):
        op([torch.randn(2, 9, 4, 4)] * 2)
    with pytest.raises(ValueError, match=rf"^{name}: .*single tensor of shape \(2, 8, 4, 4\)"):
        op(torch.randn(2, 8, 4, 4))


@pytest.mark.parametrize("name", ALL_OPS)
def test_wrong_number_of_inputs_is_refused(name):
    op = create_op(name, 8, 2)
    with pytest.raises(
        ValueError, match=rf"^{name}: expected 2 inputs.*received 3 inputs of shapes"
    ):
        op(make_inputs(3, 8))


@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize(("channels", "num_inputs"), [(0, 2), (-4, 2), (True, 2), (8.0, 2), (8, 1)])
def test_unusable_channels_or_input_count_are_refused(name, channels, num_inputs):
    with pytest.raises(ValueError, match=rf"^{name}: (channels|num_inputs) must be"):
        create_op(name, channels, num_inputs)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("dwff", {"reduction": 0}, "reduction must be"),
        ("aff", {"reduction": -1}, "reduction must be"),
        ("cmgm", {"heads": 0}, "heads must be"),
        ("cmgm", {"attn_impl": "flash"}, "attn_impl must be one of"),
        ("dynconv", {"kernel_size": 2}, "kernel_size must be odd"),
        ("dynconv", {"conv_impl": "loop"}, "conv_impl must be one of"),
        ("pmfs", {"ch_k": 0}, "ch_k must be"),
    ],
)
def test_unusable_options_are_refused(name, options, message):
    with pytest.raises(ValueError, match=rf"^{name}: {message}"):
        create_op(name, 16, 2, **options)


# --- what each op computes -------------------------------------------------------------------


@pytest.mark.parametrize("train", [True, False])
def test_aff_of_x_and_x_is_2x_for_any_weights(train):
    op = create_op("aff", 16, 2)
    randomise(op, seed=3)
    op.train(train)
    (x,) = make_inputs(1, 16, batch=3, size=5, seed=2)
    torch.testing.assert_close(op([x, x]), 2 * x, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(op([x, -x]), torch.zeros_like(x))  # the gate is not 1/2


def test_aff_scale_is_an_option():
    op = create_op("aff", 8, 2, scale=1.0).eval()
    (x,) = make_inputs(1, 8)
    torch.testing.assert_close(op([x, x]), x)


@pytest.mark.parametrize("num_inputs", [2, 3])
def test_dwff_weights_over_inputs_sum_to_one_per_channel(num_inputs):
    op = create_op("dwff", 16, num_inputs)
    randomise(op, seed=4)
    xs = make_inputs(num_inputs, 16, batch=3, size=4, seed=5)
    weights = op.input_weights(xs)
    assert weights.shape == (3, num_inputs, 16, 1, 1)
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(3, 16, 1, 1))
    assert weights.std() > 1e-3  # not uniform: the weights depend on the inputs
    expected = sum(weights[:, k] * xs[k] for k in range(num_inputs))
    torch.testing.assert_close(op(xs), expected)


def test_iaff_gates_are_fully_separate():
    op = create_op("iaff", 16, 2)
    gate1 = {id(p) for p in op.gate1.parameters()}
    gate2 = {id(p) for p in op.gate2.parameters()}
    assert gate1.isdisjoint(gate2)
    assert count_params(op.gate1) == count_params(op.gate2) == count_params(op) // 2


@pytest.mark.parametrize("train", [True, False])
def test_cmgm_sdpa_equals_the_plain_formula(train):
    op = create_op("cmgm", 32, 3, heads=4)
    randomise(op, seed=6)
    op.train(train)
    # float64: in float32 the paths' rounding differed by up to 1.3e-5 depending on which
    # tests ran before (in the same process), so a float32 tolerance passed by luck
    op.double()
    xs = [x.double() for x in make_inputs(3, 32, batch=2, size=6, seed=7)]
    assert op.attn_impl == "sdpa"
    fused = op(xs)
    op.attn_impl = "math"
    plain = op(xs)
    torch.testing.assert_close(fused, plain, rtol=1e-9, atol=1e-9)
    op.float()
    # and the attention alone, against the formula written out here
    query, key, value = torch.randn(3, 2, 4, 36, 8, generator=torch.Generator().manual_seed(8))
    by_hand = torch.softmax(query @ key.transpose(-2, -1) / math.sqrt(8), dim=-1) @ value
    op.attn_impl = "sdpa"
    torch.testing.assert_close(op.attention(query, key, value), by_hand, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels", [2, 4, 5])
def test_cmgm_at_head_dim_one_matches_the_formula_in_value_and_gradient(channels):
    # The narrowest sites (width 0.125-0.25) give cmgm heads of one channel each; the fused
    # kernel must agree with the formula there too, gradients included (issue 19).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        op = create_op("cmgm", channels, 2)
    assert op.channels // op.heads == 1
    randomise(op, seed=3)
    # float64: LayerNorm over 2 channels amplifies float32 rounding past any fixed tolerance
    op.double()
    xs = [x.double().requires_grad_() for x in make_inputs(2, channels, batch=3, size=8, seed=4)]
    results = {}
    for impl in ("sdpa", "math"):
        op.attn_impl = impl
        out = op(xs)
        grads = torch.autograd.grad(out.square().sum(), [*xs, op.to_key.weight])
        results[impl] = (out, *grads)
    for fused, plain in zip(results["sdpa"], results["math"], strict=True):
        torch.testing.assert_close(fused, plain, rtol=1e-9, atol=1e-9)


def test_cmgm_counts_the_same_flops_on_both_attention_paths():
    xs = make_inputs(2, 16, size=4)
    fused = create_op("cmgm", 16, 2, attn_impl="sdpa")
    plain = create_op("cmgm", 16, 2, attn_impl="math")
    flops = count_flops(fused, xs)
    assert flops == count_flops(plain, xs)
    batch, positions, channels = 2, 16, 16
    attention = 2 * 2 * batch * positions * positions * channels  # QK^T and AV
    assert flops > attention


def test_cmgm_falls_back_to_a_divisor_of_the_channels_with_a_warning():
    with pytest.warns(UserWarning, match="12 channels do not split into 8 heads; using 6"):
        op = create_op("cmgm", 12, 2)
    assert op.heads == 6
    assert op(make_inputs(2, 12)).shape == (2, 12, 4, 4)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_dynconv_batched_equals_per_sample_conv_with_aggregated_kernel(kernel_size):
    op = create_op("dynconv", 8, 3, kernel_size=kernel_size)
    randomise(op, seed=8)
    op.eval()
    xs = make_inputs(3, 8, batch=4, size=5, seed=9)
    with torch.no_grad():
        batched = op(xs)
        op.conv_impl = "per_sample"
        reference = op(xs)
        torch.testing.assert_close(batched, reference, rtol=1e-5, atol=1e-5)
        # and by hand, for one sample: sigmoid attention, weighted sum of experts, conv, BN
        stacked = torch.cat(xs, dim=1)
        alpha = op.expert_attention(stacked[2:3]).flatten()
        assert alpha.shape == (4,) and ((alpha > 0) & (alpha < 1)).all()
        kernel = sum(alpha[e] * op.experts[e] for e in range(4))
        by_hand = op.bn(F.conv2d(stacked[2:3], kernel, padding=kernel_size // 2))
        torch.testing.assert_close(batched[2:3], by_hand, rtol=1e-5, atol=1e-5)


def test_dynconv_experts_start_like_conv_weights():
    op = create_op("dynconv", 16, 2, num_experts=3)
    bound = 1 / math.sqrt(2 * 16)  # kaiming_uniform(a=sqrt(5)) bound for fan_in = K*C
    assert op.experts.shape == (3, 16, 32, 1, 1)
    assert op.experts.abs().max() <= bound
    assert op.experts.abs().max() > 0.8 * bound
    assert not torch.equal(op.experts[0], op.experts[1])


def test_pmfs_works_with_ch_k_different_from_ch_v():
    op = create_op("pmfs", 16, 3, ch=8, ch_k=4, ch_v=12)
    xs = [x.requires_grad_() for x in make_inputs(3, 16, batch=2, size=5)]
    out = op(xs)
    assert out.shape == (2, 16, 5, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in op.parameters())
    assert count_params(op) == pmfs_params(16, 3, ch=8, ch_k=4, ch_v=12)


# --- parameter counts ----------------------------------------------------------------------


def dws_params(inp: int, out: int, kernel: int) -> int:
    return 2 * inp + inp * kernel * kernel + inp * out + out


def pmfs_params(c: int, k: int, ch: int, ch_k: int, ch_v: int) -> int:
    joint = ch * k
    return (
        k * dws_params(c, ch, 3)
        + 2 * dws_params(joint, joint, 1)
        + dws_params(joint, 1, 1)
        + joint * joint
        + joint
        + 2 * joint
        + 2 * dws_params(joint, k * ch_k, 1)
        + dws_params(joint, k * ch_v, 1)
        + dws_params(k * ch_v, joint, 1)
        + dws_params(joint, c, 3)
    )


def dwff_params(c: int, k: int, r: int = 8, bias: bool = False) -> int:
    d = max(c // r, 4)
    return c * d + 2 * d + k * d * c + (d + k * c if bias else 0)


def mscam_params(c: int, r: int) -> int:
    cr = max(c // r, 1)
    return 4 * c * cr + 6 * cr + 6 * c


def dynconv_params(c: int, k: int, experts: int = 4, kernel: int = 1) -> int:
    m = max(k * c // 4, 4)
    return k * c * m + 2 * m + m * experts + experts + experts * c * k * c * kernel**2 + 2 * c


@pytest.mark.parametrize(
    ("name", "channels", "num_inputs", "options", "expected"),
    [
        # the configurations docs/ops.md gives numbers for
        ("dwff", 64, 2, {"reduction": 8, "bias": True}, 1688),
        ("aff", 64, 2, {"reduction": 4}, 4576),
        ("cmgm", 64, 2, {}, 91008),
        # the formulas at other sizes
        ("add", 40, 3, {}, 0),
        ("concat", 40, 3, {}, 3 * 40 * 40 + 2 * 40),
        ("dwff", 40, 3, {"bias": True}, dwff_params(40, 3, bias=True)),
        ("dwff", 40, 3, {}, dwff_params(40, 3)),
        ("dwff", 16, 2, {}, dwff_params(16, 2)),  # d = max(2, 4) = 4
        ("aff", 40, 3, {}, mscam_params(40, 4)),
        ("aff", 2, 2, {}, mscam_params(2, 4)),  # Cr = max(0, 1) = 1
        ("iaff", 64, 2, {}, 2 * mscam_params(64, 4)),
        ("iaff", 80, 4, {"reduction": 16}, 2 * mscam_params(80, 16)),
        ("cmgm", 40, 2, {}, 22 * 40 * 40 + 14 * 40),
        ("dynconv", 40, 2, {}, dynconv_params(40, 2)),
        ("dynconv", 16, 3, {"kernel_size": 3, "num_experts": 2}, dynconv_params(16, 3, 2, 3)),
        ("pmfs", 40, 2, {}, pmfs_params(40, 2, 20, 20, 20)),
        ("pmfs", 8, 3, {}, pmfs_params(8, 3, 8, 8, 8)),  # ch = max(4, 8) = 8
    ],
)
def test_parameter_counts_match_the_formulas(name, channels, num_inputs, options, expected):
    assert count_params(create_op(name, channels, num_inputs, **options)) == expected


def test_every_op_has_a_parameter_count_check():
    checked = {"add", "concat", "dwff", "aff", "iaff", "cmgm", "dynconv", "pmfs"}
    assert set(list_ops()) <= checked, "add the new op to test_parameter_counts_match_the_formulas"


# --- the `nasfuse ops` table -----------------------------------------------------------------


def test_ops_command_prints_params_and_flops_for_every_op(capsys):
    assert main(["ops", "--channels", "16", "--inputs", "3", "--size", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line and line.split()[0] in ALL_OPS}
    assert list(rows) == ALL_OPS
    assert rows["add"][1] == "0"
    assert int(rows["concat"][1].replace(",", "")) == 3 * 16 * 16 + 2 * 16
    assert int(rows["cmgm"][1].replace(",", "")) == 22 * 16 * 16 + 14 * 16


def test_ops_command_latency_names_the_device(capsys):
    from nasfuse.runtime import default_device, device_name

    argv = ["ops", "--channels", "8", "--size", "4", "--latency", "--runs", "3", "--warmup", "1"]
    assert main([*argv, "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["op", "params", "MFLOPs", "latency_ms"]
    rows = [line.split() for line in lines if line and line.split()[0] in ALL_OPS]
    assert len(rows) == len(ALL_OPS) and all(float(row[3]) > 0 for row in rows)
    assert torch.get_num_threads() == 1  # as timed (conftest), so the CPU name reads alike
    assert lines[-1].endswith(f"on {device_name(default_device())}")


def test_ops_command_refuses_bad_sizes(capsys):
    assert main(["ops", "--channels", "0"]) == 2
    assert "nasfuse ops: error: add: channels must be" in capsys.readouterr().err
    assert main(["ops", "--size", "0"]) == 2
    assert "--size must be >= 1" in capsys.readouterr().err
    assert main(["ops", "--latency", "--threads", "0"]) == 2
    captured = capsys.readouterr()
    assert "--threads must be >= 1" in captured.err and captured.out == ""
    assert main(["ops", "--latency", "--clock", "thread", "--threads", "2"]) == 2
    captured = capsys.readouterr()
    assert "add --threads 1" in captured.err and captured.out == ""


# --- starting as the sum (the supernet's initialisation) ----------------------------------


def _batchnorm_eval_scale(op: nn.Module) -> float:
    """A fresh BN in eval mode divides by sqrt(1 + eps)."""
    return 1.0 / math.sqrt(1.0 + op.bn.eps)


# What each op computes right after init_as_sum, in eval mode with fresh BN statistics.
STARTS_AS = {
    "add": lambda op, xs: sum(xs),
    "concat": lambda op, xs: sum(xs) * _batchnorm_eval_scale(op),
    "dwff": lambda op, xs: sum(xs) / len(xs),
    "aff": lambda op, xs: sum(xs),
    "iaff": lambda op, xs: sum(xs) / 2,
    "cmgm": lambda op, xs: xs[0],
    "dynconv": lambda op, xs: sum(xs) * _batchnorm_eval_scale(op),
}


# Ops with no form that carries the sum; init_as_sum must leave them as they are.
KEEPS_ITS_INIT = {"pmfs"}


def test_every_op_declares_how_it_starts_from_the_sum():
    assert set(STARTS_AS) | KEEPS_ITS_INIT == set(ALL_OPS)


@pytest.mark.parametrize("num_inputs", [2, 3])
@pytest.mark.parametrize("name", sorted(STARTS_AS))
def test_init_as_sum_starts_from_the_documented_form(name, num_inputs):
    op = create_op(name, 16, num_inputs)
    if name == "dynconv":
        op.init_as_sum(spread=0.0)
    else:
        op.init_as_sum()
    op.eval()
    xs = make_inputs(num_inputs, 16)
    tolerance = 1e-2 if name == "cmgm" else 1e-5  # cmgm's conv block starts small, not 0
    with torch.no_grad():
        torch.testing.assert_close(op(xs), STARTS_AS[name](op, xs), atol=tolerance, rtol=0)


@pytest.mark.parametrize("name", sorted(KEEPS_ITS_INIT))
def test_init_as_sum_leaves_ops_without_a_sum_form_unchanged(name):
    torch.manual_seed(0)
    op = create_op(name, 16, 2)
    before = {k: v.clone() for k, v in op.state_dict().items()}
    op.init_as_sum()
    assert all(torch.equal(before[k], v) for k, v in op.state_dict().items())


def test_dynconv_init_as_sum_keeps_experts_distinct():
    op = create_op("dynconv", 8, 2)
    op.init_as_sum()
    experts = op.experts.detach().flatten(1)
    assert not torch.allclose(experts[0], experts[1])
    # Centre taps near (2 / E) [I, I]: the aggregated kernel at alpha = 0.5 is near [I, I].
    aggregated = 0.5 * op.experts.detach().sum(0)[:, :, 0, 0]
    identity = torch.eye(8).repeat(1, 2)
    assert (aggregated - identity).abs().max() < 0.5


@pytest.mark.parametrize("name", [op for op in ALL_OPS if op != "add"])
def test_every_parameter_learns_within_three_steps_from_the_sum(name):
    # A zeroed layer passes no gradient to what feeds it until it has had an update of its
    # own (iaff's first gate waits for the second's); nothing may stay frozen for good.
    torch.manual_seed(0)
    op = create_op(name, 8, 2)
    op.init_as_sum()
    optimiser = torch.optim.SGD(op.parameters(), lr=0.1)
    xs = make_inputs(2, 8, batch=4)
    for _ in range(3):
        optimiser.zero_grad()
        op(xs).square().mean().backward()
        optimiser.step()
    for pname, parameter in op.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, pname
