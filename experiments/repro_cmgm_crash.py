"""Issue 19, reduced: the heap corruption behind "cmgm at a 4-channel site aborts training".

The bug is in oneDNN (bundled with torch): the AVX2 kernel for the weight gradient of a
1x1 stride-2 convolution (``jit_1x1:avx2``, backward_weights) writes past its workspace
when the input is channels-last (nhwc) and has fewer channels than its block of 8
(oneDNN issue #6035, "1x1 convolution backward_weights writes past the rtus workspace
(nhwc, IC < ic_block)"). A ResNet's downsampling shortcut is exactly that convolution.

What brought us there was ours: cmgm turned its (B, N, C) tokens back into an image with
``transpose(1, 2).reshape(B, C, H, W)``, a view with channels-last strides; its conv block
kept that layout, and so did everything after it, down to the next stage's shortcut. Since
the fix cmgm (and every op) returns its input's memory format (tests/test_ops.py checks it).

On a CPU with AVX-512 oneDNN picks another kernel, which does not crash here;
``ONEDNN_MAX_CPU_ISA=AVX2`` selects the AVX2 kernel, as on a CPU without AVX-512.
``MALLOC_CHECK_=3`` makes glibc abort at the corruption. Each case runs in a subprocess,
since a corrupted heap kills it:

    python experiments/repro_cmgm_crash.py

prints one line per case with its exit code (-6 is SIGABRT, -11 SIGSEGV). Seen with torch
2.14.1 (oneDNN 3.12.0): the channels-last cases at 2 to 7 input channels abort; at 1 or 8
channels, in the contiguous layout, or with oneDNN off, they pass. The corruption is not
caught every time (one run of the 4-channel case out of several passed), so each case
runs three times.
"""

from __future__ import annotations

import os
import subprocess
import sys


def conv_weight_gradient(channels: int, channels_last: bool, mkldnn: bool) -> None:
    """One backward pass of a 1x1 stride-2 conv ``channels -> 2 * channels``, batch 8, 16x16."""
    import torch

    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = mkldnn
    x = torch.randn(8, channels, 16, 16)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(2 * channels, channels, 1, 1, requires_grad=True)
    torch.nn.functional.conv2d(x, weight, stride=2).sum().backward()


def cmgm_in_resnet20(steps: int = 5) -> None:
    """A few training steps of resnet20 at width 0.25, 16x16, cmgm at every site."""
    import warnings

    import torch

    from nasfuse import load_space
    from nasfuse.supernet import build_model

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # 4 channels: cmgm falls back to 4 heads
    space = load_space("resnet20", {"width_mult": 0.25, "input_size": 16})
    model = build_model(space, space.uniform_arch("cmgm"), num_classes=10, in_chans=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        loss = model(torch.randn(8, 1, 16, 16)).logsumexp(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


CASES = {
    "conv 1x1/2, 4 ch, channels-last": "conv_weight_gradient(4, True, True)",
    "conv 1x1/2, 6 ch, channels-last": "conv_weight_gradient(6, True, True)",
    "conv 1x1/2, 8 ch, channels-last": "conv_weight_gradient(8, True, True)",
    "conv 1x1/2, 4 ch, contiguous": "conv_weight_gradient(4, False, True)",
    "conv 1x1/2, 4 ch, channels-last, oneDNN off": "conv_weight_gradient(4, True, False)",
    "resnet20 x0.25 16x16, all cmgm": "cmgm_in_resnet20()",
}


def main() -> None:
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "MALLOC_CHECK_": "3"}
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(here), env.get("PYTHONPATH", "")])
    for label, call in CASES.items():
        codes = []
        for _ in range(3):
            child = (
                f"import sys; sys.path.insert(0, {here!r}); from repro_cmgm_crash import *; {call}"
            )
            done = subprocess.run(
                [sys.executable, "-c", child], env=env, capture_output=True, text=True
            )
            codes.append(done.returncode)
        verdict = "ok" if codes == [0, 0, 0] else "CRASH"
        print(f"{label:45s} exit codes {codes}  {verdict}")


if __name__ == "__main__":
    main()
