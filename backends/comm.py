"""Communication cost: an alpha-beta model per collective on the link tier it crosses.

A collective over a group of ``n`` devices moves, per device, the standard volumes
(``S`` = bytes of the full, gathered tensor; ``s`` = bytes of one device's buffer):

=================  ==========================  ===================
collective         bytes each device sends      latency steps
=================  ==========================  ===================
``all_gather``     (n − 1)/n · S  = (n − 1)·s   n − 1   (ring)
``reduce_scatter`` (n − 1)/n · S                n − 1   (ring)
``all_reduce``     2 (n − 1)/n · S              2 (n − 1) (ring: reduce-scatter + all-gather)
``all_to_all``     (n − 1)/n · s                n − 1   (pairwise exchange)
``send_recv``      steps · s                    steps
=================  ==========================  ===================

and takes ``latency_steps · α + volume / (bandwidth · efficiency)`` on its tier. A group
whose devices all sit in one node uses the GPU-GPU link (NVLink, Infinity Fabric, or PCIe
when the card has none); a group spread over nodes uses the inter-node network given in
the parallel config (``parallel.network``). Ring collectives across nodes run at the
network's pace (the ring's slowest hop); an all-to-all across nodes sends the share bound
for other nodes over the network and the rest over the node's link at the same time.

Bandwidths are per device and per direction, in bytes/s; latencies in seconds.
"""
from __future__ import annotations

from dataclasses import dataclass

from wanir.errors import ConfigError

#: the collective op kinds (category ``communication`` in wanir/ops/defs.py)
COLLECTIVES = ("all_gather", "reduce_scatter", "all_reduce", "all_to_all", "send_recv")


@dataclass(frozen=True)
class Link:
    """One link tier: ``bandwidth`` per device per direction (bytes/s), ``latency`` per
    message step (s) and the fraction of ``bandwidth`` collectives reach (``efficiency``)."""

    name: str
    bandwidth: float
    latency: float
    efficiency: float = 1.0

    def __post_init__(self):
        if not self.bandwidth > 0:
            raise ConfigError(f"link '{self.name}': bandwidth must be > 0 bytes/s, got {self.bandwidth!r}")
        if self.latency < 0:
            raise ConfigError(f"link '{self.name}': latency must be >= 0 s, got {self.latency!r}")
        if not 0 < self.efficiency <= 1:
            raise ConfigError(f"link '{self.name}': efficiency must be in (0, 1], got {self.efficiency!r}")

    @property
    def effective_bandwidth(self) -> float:
        """Bytes/s a collective reaches on this link."""
        return self.bandwidth * self.efficiency

    def time(self, nbytes: float, steps: int) -> float:
        """Seconds to move ``nbytes`` per device in ``steps`` latency-bound steps."""
        if nbytes <= 0 and steps <= 0:
            return 0.0
        return steps * self.latency + nbytes / self.effective_bandwidth


@dataclass(frozen=True)
class Topology:
    """Where devices sit: ``gpus_per_node`` devices share the ``intra`` link; groups spread
    over nodes use ``inter``. ``staged``: for PCIe cards with a ``host_topology`` (a
    :class:`wanir.hardware.Hardware`), the intra-node link's bandwidth depends on how many
    cards stage through the host at once (:func:`staged_bandwidth`)."""

    gpus_per_node: int
    intra: Link
    inter: Link
    staged: object = None

    def intra_link(self, cards: int) -> Link:
        """The intra-node Link when ``cards`` cards of one node communicate at once."""
        if self.staged is None:
            return self.intra
        return Link(self.intra.name, staged_bandwidth(self.staged, cards), self.intra.latency, 1.0)

    def members_per_node(self, stride: int, size: int) -> int:
        """How many of a group's ``size`` devices (ranks ``base + stride·i``) share one node."""
        if size <= 1:
            return 1
        if stride >= self.gpus_per_node:
            return 1
        return max(1, min(size, self.gpus_per_node // stride))

    def tier(self, stride: int, size: int) -> str:
        """'intra_node' when the whole group fits in one node, else 'inter_node'."""
        return "intra_node" if self.members_per_node(stride, size) >= size else "inter_node"


def volume(kind: str, in_bytes: int, out_bytes: int, n: int, steps: int = 1) -> int:
    """Bytes each device sends (and receives) in one collective of ``kind`` over ``n``
    devices, whose per-device input is ``in_bytes`` and output ``out_bytes`` (ints; a
    fractional byte rounds up)."""
    if n <= 1:
        return 0
    if kind == "all_gather":            # input is the shard s, output the full S = n·s
        return (n - 1) * in_bytes
    if kind == "reduce_scatter":        # input is the full S
        return -(-(n - 1) * in_bytes // n)
    if kind == "all_reduce":
        return -(-2 * (n - 1) * in_bytes // n)
    if kind == "all_to_all":            # keeps 1/n of its buffer, sends the rest
        return -(-(n - 1) * in_bytes // n)
    if kind == "send_recv":
        return steps * in_bytes
    raise ConfigError(f"no communication volume rule for op '{kind}' (collectives: {', '.join(COLLECTIVES)})")


def latency_steps(kind: str, n: int, steps: int = 1) -> int:
    """Latency-bound message steps of one collective over ``n`` devices (an int)."""
    if n <= 1:
        return 0
    return {"all_gather": n - 1, "reduce_scatter": n - 1, "all_reduce": 2 * (n - 1),
            "all_to_all": n - 1, "send_recv": steps}[kind]


def collective_time(kind: str, in_bytes: int, out_bytes: int, n: int, topo: Topology,
                    stride: int = 1, steps: int = 1) -> tuple[float, str]:
    """(seconds, tier) of one collective over a group of ``n`` devices spaced ``stride``
    ranks apart, on ``topo``."""
    if n <= 1:
        return 0.0, "none"
    vol = volume(kind, in_bytes, out_bytes, n, steps)
    lat = latency_steps(kind, n, steps)
    k = topo.members_per_node(stride, n)
    if k >= n:
        return topo.intra_link(n).time(vol, lat), "intra_node"
    if kind == "all_to_all":
        # the share for peers in other nodes crosses the network; the rest stays in the node
        local = -(-in_bytes * (k - 1) // n)
        remote = -(-in_bytes * (n - k) // n)
        t = max(topo.intra_link(k).time(local, k - 1) if k > 1 else 0.0, topo.inter.time(remote, n - k))
        return t, "inter_node"
    return topo.inter.time(vol, lat), "inter_node"


# ------------------------------------------------------------------ topology from specs

#: defaults of the inter-node network (one 400 Gb/s NIC per GPU, as in common H100 clusters)
DEFAULT_NETWORK = {"bandwidth_GBps": 50.0, "latency_us": 10.0, "efficiency": 0.8}
#: defaults of the GPU-GPU link's latency and achieved fraction (its bandwidth is the hardware's):
#: NVLink all-reduce bus bandwidth reaches ~80 % of the one-direction figure (nccl-tests)
DEFAULT_INTRA = {"latency_us": 5.0, "efficiency": 0.8}
#: latency of peers that talk over PCIe (no GPU-GPU link)
PCIE_LATENCY_US = 10.0
#: cards without a GPU-GPU link (L40S, L20, RTX 4090) run NCCL collectives through pinned
#: host memory (peer-to-peer is disabled on consumer cards and unsupported across PCIe root
#: complexes in most servers): every byte is copied device→host and then host→device over
#: the same x16 link, so a collective reaches half the host link's achieved rate
PCIE_HOST_STAGING = 0.5
#: bytes of host DRAM traffic per byte a card stages through host memory: the sender's
#: device-to-host copy writes it, the receiver's host-to-device copy reads it
HOST_BYTES_PER_STAGED_BYTE = 2
#: per byte copied from pageable host memory: the driver's CPU copy into a pinned bounce buffer
#: reads and writes it, the DMA reads it again
HOST_BYTES_PER_PAGEABLE_BYTE = 3
#: sustained share of the host DRAM bandwidth (STREAM-like; kernels.yaml's cpu memory.fraction)
HOST_MEMORY_FRACTION = 0.7


def _shared_seconds_per_byte(hw, cards: int, host_bytes: int) -> tuple[float, float]:
    """(uplink, DRAM) seconds per byte and card of a host-side transfer: the cards behind
    one x16 uplink share it (a card reaches 1/k of it when k transfer at once), and every
    transfer of the ``cards`` cards crosses the host's DRAM ``host_bytes`` times."""
    ht = hw.host_topology
    link = hw.host_link_bandwidth * hw.host_link_efficiency
    uplink = min(cards, ht.cards_per_root_complex) / link
    memory = host_bytes * cards / (ht.host_memory_bandwidth * HOST_MEMORY_FRACTION)
    return uplink, memory


def staged_bandwidth(hw, cards: int) -> float:
    """Bytes/s per card per direction of a collective among ``cards`` PCIe cards of one host
    (hardware with a ``host_topology``). Without P2P (GeForce cards; cards on different root
    complexes) NCCL stages every byte through pinned host memory: store and forward, so a byte's
    time is its share of the x16 uplink plus its share of the host DRAM, which all ``cards``
    cards cross at once (HOST_BYTES_PER_STAGED_BYTE each). With P2P the cards copy directly
    through the PCIe switch at their link rate. Anchor: 8× RTX 5090 (PCIe 5.0, no P2P) reach
    35 GB/s all-reduce bus bandwidth on 4 cards and 28 on 8 (NVIDIA/nccl #1639); the 4 → 8
    fall-off follows from the DRAM term (tests/test_comm.py)."""
    cards = max(1, int(cards))
    ht = hw.host_topology
    if ht.p2p:
        return hw.host_link_bandwidth * hw.host_link_efficiency
    uplink, memory = _shared_seconds_per_byte(hw, cards, HOST_BYTES_PER_STAGED_BYTE)
    return 1.0 / (uplink + memory)


def shared_copy_rate(hw, ranks: int, copy_rate: float) -> float:
    """Bytes/s per rank of host↔device weight copies when ``ranks`` ranks of one host copy at
    once (per-rank offload), each alone at ``copy_rate``: pageable copies cross the host DRAM
    HOST_BYTES_PER_PAGEABLE_BYTE times, and the cards behind one uplink share it. Hardware
    without a ``host_topology``, or one rank: ``copy_rate``."""
    ranks = max(1, int(ranks))
    if hw.host_topology is None or ranks == 1:
        return copy_rate
    ht = hw.host_topology
    share = min(ranks, ht.cards_per_root_complex)
    memory = HOST_BYTES_PER_PAGEABLE_BYTE * ranks / (ht.host_memory_bandwidth * HOST_MEMORY_FRACTION)
    return 1.0 / (share / copy_rate + memory)


def _numbers(prefix: str, given, defaults: dict) -> dict:
    out = dict(defaults)
    for k, v in dict(given or {}).items():
        if k not in defaults and k != "bandwidth_GBps":
            raise ConfigError(f"unknown key {prefix}.{k}; keys: {', '.join(defaults)}")
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{prefix}.{k} must be a number, got {v!r}")
        out[k] = float(v)
    return out


def network_link(network=None) -> Link:
    """The inter-node Link from a ``parallel.network`` mapping (``bandwidth_GBps`` per GPU
    per direction, ``latency_us``, ``efficiency``); missing keys take DEFAULT_NETWORK."""
    n = _numbers("parallel.network", network, DEFAULT_NETWORK)
    return Link("network", n["bandwidth_GBps"] * 1e9, n["latency_us"] * 1e-6, n["efficiency"])


def topology(hw, gpus_per_node: int = 8, network=None, intra_node=None) -> Topology:
    """The Topology of a :class:`wanir.hardware.Hardware`: inside a node its GPU-GPU link
    (``gpu_link_bandwidth`` per direction, with ``intra_node`` latency and efficiency,
    DEFAULT_INTRA when not given), or, when the card has no GPU-GPU link, PCIe through host
    memory (the host link × PCIE_HOST_STAGING, at the host link's efficiency); across nodes
    the ``network`` of the parallel config."""
    i = _numbers("parallel.intra_node", intra_node, DEFAULT_INTRA)
    staged = None
    if hw.gpu_link_bandwidth:
        intra = Link("gpu_link", hw.gpu_link_bandwidth, i["latency_us"] * 1e-6, i["efficiency"])
    else:
        lat = i["latency_us"] if intra_node and "latency_us" in dict(intra_node) else PCIE_LATENCY_US
        intra = Link("pcie_via_host", hw.host_link_bandwidth * PCIE_HOST_STAGING, lat * 1e-6, hw.host_link_efficiency)
        if getattr(hw, "host_topology", None) is not None:
            staged = hw
    return Topology(int(gpus_per_node), intra, network_link(network), staged)
