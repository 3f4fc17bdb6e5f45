"""Parallel plans as graph transforms: a pipeline graph in, one device's graph out.

A :class:`Plan` splits ``degree`` devices into four nested dimensions (innermost first:
ranks ``0..ulysses-1`` form one Ulysses group, and so on outwards)::

    degree = ulysses × ring × cfg × dp          fsdp divides degree

and :func:`shard_graph` rewrites the graph the way the reference systems run it
(Wan2.1's ``generate.py`` with ``--ulysses_size/--ring_size/--dit_fsdp/--t5_fsdp``, and
xDiT's classifier-free-guidance parallelism):

- **Sequence parallel** (``ulysses``·``ring`` = sp > 1, DiT only): the hidden states and the
  rotary tables are cut along the token axis where they enter the transformer blocks
  (padded up to a multiple of sp first, as the reference pads); every op of the blocks
  and of the head that works token by token runs on L/sp tokens. Each self-attention gets
  - Ulysses: ``all_to_all`` of q, k and v (tokens gathered, heads scattered) before the
    ``sdpa`` and one of the output after it; needs heads % ulysses == 0;
  - ring: ``send_recv`` of the k and v blocks, ``ring − 1`` steps, overlappable with the
    attention, and the ``sdpa`` runs ``ring`` times (a ``loop`` scope) on one block each;
  - both (USP): Ulysses inside, ring across.
  Cross-attention runs the local query shard against the full text keys and values, with
  no communication (as Wan's ``usp_attn_forward`` leaves cross-attention untouched). The
  per-token output is gathered (``all_gather``) where an op needs whole tokens again (the
  unpatchify reshape).
- **CFG parallel** (``cfg`` = 2): each device runs one guidance branch, so the DiT and the
  text encoder run half as often per device; one ``all_gather`` of the prediction per step.
- **FSDP** (``fsdp`` > 1, text encoder and DiT): weights are sharded ``fsdp`` ways. Before
  each transformer block an ``all_gather`` assembles its weights (overlappable with the
  previous block); the weights outside the blocks are gathered once per call. Resident
  weight bytes per device drop by ``fsdp`` (``graph.meta['parallel']['fsdp']``).
- **Data parallel** (``dp``): whole replicas. The device graph is one replica's; latency per
  video is unchanged, throughput scales by ``dp``.
- Stages that do not shard (the VAE decode, the VAE encode) run on one device, as the
  reference decodes on rank 0 only; ``meta['parallel']['notes']`` says so.

Every inserted communication node is an ordinary node (kinds from wanir/ops/defs.py) that
the passes annotate and reports list; ``meta['parallel']['comm']`` records per node its
group (``ulysses``, ``ring``, ``sp``, ``cfg``, ``fsdp``), the group's rank stride and size
(the link tier follows from them and the hardware) and what it may overlap with.
"""
from __future__ import annotations
from .cost import DeviceGraph, MultiDeviceCost, is_multi_device, multi_device_cost
from .plan import (CFG_STAGES, COMPONENTS, DIMS, FSDP_STAGES, SINGLE_DEVICE_STAGES, SP_STAGES, Plan, PlanError,
                   check_plan, make_plan, plan_from, resolve_plan)
from .render import cost_rows, render_cost, summary_lines
from .transform import block_units, shard_graph

__all__ = ["CFG_STAGES", "COMPONENTS", "DIMS", "FSDP_STAGES", "SINGLE_DEVICE_STAGES", "SP_STAGES", "DeviceGraph",
           "MultiDeviceCost", "Plan", "PlanError", "block_units", "check_plan", "cost_rows", "is_multi_device",
           "make_plan", "multi_device_cost", "plan_from", "render_cost", "resolve_plan", "shard_graph",
           "summary_lines"]
