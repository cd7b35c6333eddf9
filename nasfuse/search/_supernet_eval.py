"""The real costs and evaluator: a trained supernet, its data, and the latency table.

- :class:`SupernetCosts` (driver): latency from :class:`~nasfuse.latency.LatencyTable`, the
  parameter count as the supernet's shared parameters plus the chosen candidate op at every
  site (no network is built per architecture).
- :class:`SupernetEvaluator` (workers): sets the architecture on the supernet, recalibrates
  BatchNorm and scores the validation split (:func:`nasfuse.training.evaluate_arch`), and
  with ``measure_latency`` times the extracted network. Its FLOPs are a sum over a per-site
  table counted once in the driver (:func:`site_flop_table`), exactly what counting the
  network gives, without the counter's ~0.1 s per trial.

The supernet and the data bundle are put into Ray's object store once; the evaluator that
``tune.with_parameters`` ships carries only their references, and every worker process
fetches and unpickles them once (a module-level cache), not once per trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nasfuse.profile import count_flops, count_params

__all__ = ["SupernetCosts", "SupernetEvaluator", "site_flop_table", "site_param_table"]

_WORKER_OBJECTS: dict[str, Any] = {}


def site_param_table(supernet: nn.Module) -> tuple[int, dict[str, dict[str, int]]]:
    """Parameters shared by every architecture, and those of each candidate op per site.

    Returns:
        ``(shared, table)``: ``params(arch) = shared + sum(table[site][arch[site]])``.
    """
    from nasfuse.supernet._supernet import SiteChoice

    table: dict[str, dict[str, int]] = {}
    for module in supernet.modules():
        if isinstance(module, SiteChoice):
            table[module.site_name] = {
                op: count_params(candidate) for op, candidate in module.candidates.items()
            }
    total_candidates = sum(sum(ops.values()) for ops in table.values())
    return count_params(supernet) - total_candidates, table


@torch.no_grad()
def site_flop_table(
    supernet: nn.Module, image: torch.Tensor
) -> tuple[int, dict[str, dict[str, int]]]:
    """FLOPs shared by every architecture, and those of each candidate op per site.

    A site's op sees inputs of the same shapes whatever the other sites run, and the rest
    of the network does not depend on it, so FLOPs add up site by site. One forward pass
    records every site's inputs; each candidate is then counted on them alone.

    Args:
        supernet: the supernet (its active path is counted once and left as it was).
        image: a ``(B, C, H, W)`` input, batch 1 for FLOPs per image.

    Returns:
        ``(shared, table)``: ``count_flops`` of the supernet with ``arch`` set equals
        ``shared + sum(table[site][arch[site]])``.
    """
    from nasfuse.supernet._supernet import SiteChoice

    sites = [module for module in supernet.modules() if isinstance(module, SiteChoice)]
    inputs: dict[str, list[torch.Tensor]] = {}

    def record(module: nn.Module, args: tuple[Any, ...]) -> None:
        inputs[module.site_name] = [x.detach().clone() for x in args[0]]

    hooks = [site.register_forward_pre_hook(record) for site in sites]
    try:
        total = count_flops(supernet, image)
    finally:
        for hook in hooks:
            hook.remove()
    table = {
        site.site_name: {
            op: count_flops(candidate, [x.clone() for x in inputs[site.site_name]])
            for op, candidate in site.candidates.items()
        }
        for site in sites
    }
    active = sum(table[site.site_name][site.active] for site in sites)
    return total - active, table


class SupernetCosts:
    """Driver-side costs of an architecture of ``supernet``'s space.

    Args:
        supernet: the trained supernet (only its structure is read).
        latency_table: predicts latency in ms; its ``device`` names the hardware.
    """

    def __init__(self, supernet: nn.Module, latency_table: Any) -> None:
        self.shared_params, self.param_table = site_param_table(supernet)
        self.latency_table = latency_table
        self.device = str(latency_table.device)

    def latency_ms(self, arch: Mapping[str, str]) -> float:
        return float(self.latency_table.predict(arch))

    def params(self, arch: Mapping[str, str]) -> int:
        return self.shared_params + sum(self.param_table[site][op] for site, op in arch.items())


class SupernetEvaluator:
    """Worker-side scoring with inherited supernet weights (see module doc).

    Args:
        supernet: the trained supernet (put into the object store here, once).
        bundle: the :class:`~nasfuse.data.DataBundle` (calib and val loaders are used).
        calib_batches: BN recalibration batches per architecture.
        measure_latency: also time the extracted network (ms, median) as the latency.
        latency_batch_size: batch size of that measurement (the table's).
        finetune_steps: fine-tune a copy of each architecture this many steps first.
        few_shot: :class:`~nasfuse.training.FewShotSupernets` whose sub-supernet of an
            architecture's op at the split site scores it (each put into the store once).
    """

    def __init__(
        self,
        supernet: nn.Module,
        bundle: Any,
        calib_batches: int,
        measure_latency: bool = False,
        latency_batch_size: int = 1,
        finetune_steps: int = 0,
        few_shot: Any = None,
    ) -> None:
        import ray

        if not ray.is_initialized():
            # ray.put would start a default local Ray, ignoring the search's address and CPUs.
            raise RuntimeError(
                "SupernetEvaluator puts the supernet into Ray's object store: enter "
                "nasfuse.search.local_ray(address, num_cpus) first"
            )
        self.supernet_ref = ray.put(supernet)
        self.bundle_ref = ray.put(bundle)
        self.finetune_steps = int(finetune_steps)
        self.few_shot_site = few_shot.site if few_shot is not None else None
        self.few_shot_refs = (
            {op: ray.put(net) for op, net in few_shot.supernets.items()} if few_shot else {}
        )
        self.calib_batches = int(calib_batches)
        self.measure_latency = measure_latency
        self.latency_batch_size = int(latency_batch_size)
        side = int(supernet.space.input_size)
        self.input_shape = (int(getattr(supernet, "in_chans", 3)), side, side)
        self.shared_flops, self.flop_table = site_flop_table(
            supernet, torch.zeros(1, *self.input_shape)
        )

    def flops(self, arch: Mapping[str, str]) -> int:
        """FLOPs per image of ``arch`` (from the table: no network is run)."""
        return self.shared_flops + sum(self.flop_table[site][op] for site, op in arch.items())

    def _fetch(self, ref: Any) -> Any:
        import ray

        key = ref.hex()
        if key not in _WORKER_OBJECTS:
            _WORKER_OBJECTS[key] = ray.get(ref)
        return _WORKER_OBJECTS[key]

    def evaluate(self, arch: Mapping[str, str]) -> dict[str, float]:
        from nasfuse.training import evaluate_arch

        ref = self.supernet_ref
        if self.few_shot_site is not None:
            ref = self.few_shot_refs[arch[self.few_shot_site]]
        supernet = self._fetch(ref)
        bundle = self._fetch(self.bundle_ref)
        accuracy = evaluate_arch(
            supernet,
            arch,
            bundle,
            calib_batches=self.calib_batches,
            finetune_steps=self.finetune_steps,
        )
        metrics = {
            "accuracy": float(accuracy),
            "flops": float(self.flops(arch)),
            "eval_samples": float(len(bundle.val.dataset)),
        }
        if self.measure_latency:
            from nasfuse.latency import measure_latency

            model = supernet.extract(arch).eval()
            stats = measure_latency(model, (self.latency_batch_size, *self.input_shape))
            metrics["latency_ms"] = float(stats.median_ms)
        return metrics
