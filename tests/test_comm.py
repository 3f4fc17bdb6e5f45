"""Communication volumes and times derived by hand for each collective."""
import pytest

from wanir.backends import comm
from wanir.backends.comm import Link, Topology, collective_time, latency_steps, volume
from wanir.errors import ConfigError

MiB = 2**20


def test_all_gather_volume_is_n_minus_1_shards():
    # 8 ranks each hold a 4 MiB shard; the gathered tensor is 32 MiB; each rank receives
    # the 7 shards it lacks: 7 * 4 MiB = (n-1)/n * 32 MiB
    assert volume("all_gather", 4 * MiB, 32 * MiB, 8) == 28 * MiB


def test_reduce_scatter_volume():
    # full 32 MiB buffer per rank, 8 ranks: ring reduce-scatter sends 7/8 of it
    assert volume("reduce_scatter", 32 * MiB, 4 * MiB, 8) == 28 * MiB


def test_all_reduce_volume_is_twice_reduce_scatter():
    # reduce-scatter then all-gather: 2 * (n-1)/n * S; n=4, S=8 MiB -> 12 MiB
    assert volume("all_reduce", 8 * MiB, 8 * MiB, 4) == 12 * MiB


def test_all_to_all_volume_keeps_own_piece():
    # a 16 MiB buffer split 4 ways: 1 piece stays, 3 pieces of 4 MiB leave
    assert volume("all_to_all", 16 * MiB, 16 * MiB, 4) == 12 * MiB


def test_send_recv_volume_per_step():
    # ring attention with 4 ranks: 3 exchanges of a 2 MiB block
    assert volume("send_recv", 2 * MiB, 2 * MiB, 4, steps=3) == 6 * MiB


def test_one_device_moves_nothing():
    for k in ("all_gather", "reduce_scatter", "all_reduce", "all_to_all", "send_recv"):
        assert volume(k, MiB, MiB, 1) == 0
        assert latency_steps(k, 1) == 0


def test_unknown_collective_is_an_error():
    with pytest.raises(ConfigError, match="no communication volume rule"):
        volume("broadcast", 1, 1, 2)


NV = Link("nvlink", 400e9, 5e-6, 0.8)
NET = Link("net", 50e9, 10e-6, 0.5)
TOPO = Topology(8, NV, NET)


def test_alpha_beta_time_intra_node():
    # all-gather of 1 GB over 8 GPUs in one node: 7 steps of 5 us + (7/8 GB) / (400 GB/s * 0.8)
    t, tier = collective_time("all_gather", 125_000_000, 1_000_000_000, 8, TOPO)
    assert tier == "intra_node"
    assert t == pytest.approx(7 * 5e-6 + 875_000_000 / 320e9)


def test_ring_collective_across_nodes_runs_at_network_pace():
    # 16 ranks at stride 1 with 8 per node: spans two nodes -> the network
    t, tier = collective_time("all_gather", 1_000_000, 16_000_000, 16, TOPO)
    assert tier == "inter_node"
    assert t == pytest.approx(15 * 10e-6 + 15_000_000 / 25e9)


def test_all_to_all_across_nodes_splits_local_and_remote():
    # 16 ranks, 8 per node, 16 MB buffer: 7/16 to node peers over NVLink (7 steps),
    # 8/16 to the other node over the network (8 steps); the slower one bounds
    t, tier = collective_time("all_to_all", 16_000_000, 16_000_000, 16, TOPO)
    local = 7 * 5e-6 + 7_000_000 / 320e9
    remote = 8 * 10e-6 + 8_000_000 / 25e9
    assert tier == "inter_node"
    assert t == pytest.approx(max(local, remote))


def test_strided_group_placement():
    # a group of 2 at stride 8 (e.g. CFG over two 8-GPU Ulysses groups) crosses nodes
    assert TOPO.tier(8, 2) == "inter_node"
    assert TOPO.tier(4, 2) == "intra_node"
    assert TOPO.members_per_node(2, 8) == 4


def test_link_rejects_bad_numbers():
    with pytest.raises(ConfigError, match="efficiency"):
        Link("x", 1e9, 0.0, 1.5)


# ------------------------------------------------------------------ shared host bandwidth (PCIe, no P2P)

def _pcie_card(link_gbps, cards_per_rc, host_mem_gbps, p2p=False):
    from types import SimpleNamespace

    from wanir.hardware import HostTopology
    return SimpleNamespace(host_link_bandwidth=link_gbps * 1e9, host_link_efficiency=0.88,
                           host_topology=HostTopology(p2p, cards_per_rc, host_mem_gbps * 1e9))


def test_staged_bandwidth_reproduces_the_pcie_nccl_fall_off():
    """NVIDIA/nccl #1639: 8× RTX 5090 on PCIe 5.0 (no P2P, each card on its own x16) reach an
    all-reduce bus bandwidth of 35 GB/s on 4 cards and 28 on 8 ("on PCI systems … determined by
    the bandwidth your CPU and memory can deliver"). busbw is what each card sends per second,
    the per-card rate of the model. Solve the host DRAM bandwidth M from the 4-card row:
    1/35 = 1/(64·0.88) + 2·4/(0.7·M); then the 8-card row is a prediction."""
    link = 64 * 0.88
    m = 2 * 4 / (0.7 * (1 / 35 - 1 / link))                  # GB/s of host DRAM the 4-card row implies
    assert 900 < m < 1200, "a two-socket 12-channel DDR5 server has 922 (DDR5-4800) to 1152 (DDR5-6000) GB/s"
    card = _pcie_card(64, 1, m)
    assert comm.staged_bandwidth(card, 4) / 1e9 == pytest.approx(35, rel=1e-9)
    assert abs(comm.staged_bandwidth(card, 8) / 1e9 / 28 - 1) <= 0.12


def test_per_card_bandwidth_falls_as_cards_are_added():
    card = _pcie_card(32, 4, 614.4)
    rates = [comm.staged_bandwidth(card, n) for n in (1, 2, 4, 8)]
    assert all(a > b for a, b in zip(rates, rates[1:]))
    # two cards behind one x16 uplink: each gets at most half of it
    assert rates[1] < 32e9 * 0.88 / 2
    # with P2P the cards copy directly at their link rate, whatever the count
    p2p = _pcie_card(32, 4, 614.4, p2p=True)
    assert comm.staged_bandwidth(p2p, 8) == comm.staged_bandwidth(p2p, 2) == pytest.approx(32e9 * 0.88)


def test_per_rank_offload_shares_the_host():
    """Every rank offloading at once: pageable copies cross the host DRAM 3 times per byte
    (CPU copy into the pinned buffer reads and writes, the DMA reads) and share the uplink."""
    card = _pcie_card(32, 4, 614.4)
    alone = 32e9 * 0.88 * 0.5
    assert comm.shared_copy_rate(card, 1, alone) == alone
    four = comm.shared_copy_rate(card, 4, alone)
    assert four == pytest.approx(1 / (4 / alone + 3 * 4 / (614.4e9 * 0.7)))
    assert four < alone / 4
