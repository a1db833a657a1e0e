"""Where a stripe's blocks go, as properties over any cell: ``f4.layout.place`` (a new
stripe) and ``f4.rebuild.target`` (a rebuilt block) never put two blocks of one stripe in
one failure domain, whatever nodes serve which domains (a node may serve several, one
block directory each)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from f4.codec import N
from f4.layout import place
from f4.manifest import Stripe
from f4.rebuild import target
from trenchcoat.errors import FailedPrecondition

NODES = [f"10.0.0.{i}:7700" for i in range(1, 9)]


@st.composite
def cells(draw, *, min_domains=0, max_domains=20):
    """domain -> nodes serving it, built from what each node serves; some domains have no
    node (every node serving them is down), as a map of answering nodes may hold."""
    domains = [f"d{i:02}" for i in range(draw(st.integers(min_domains, max_domains)))]
    serves = {node: draw(st.lists(st.sampled_from(domains), unique=True, max_size=len(domains)))
              if domains else [] for node in draw(st.lists(st.sampled_from(NODES), unique=True, max_size=len(NODES)))}
    return {d: [n for n, ds in serves.items() if d in ds] for d in domains}


@settings(max_examples=300, deadline=None)
@given(cells())
def test_a_new_stripe_has_its_fourteen_blocks_in_fourteen_domains_or_is_refused(domains):
    with_a_node = [d for d, nodes in domains.items() if nodes]
    if len(with_a_node) < N:
        with pytest.raises(FailedPrecondition, match=f"needs {N} more failure domains"):
            place(domains)
        return
    placed = place(domains)
    assert len(placed) == N
    assert len({d for d, _ in placed}) == N  # no failure domain holds two blocks
    assert all(node in domains[d] for d, node in placed)  # each on a node that serves its domain


@st.composite
def stripes(draw):
    """A stripe placed over 14 distinct domains of up to 20 (its blocks' nodes serving
    one domain or several), the block to rebuild, and the nodes answering now, as domain ->
    nodes (the lost node among them or not: ``target`` must skip it either way)."""
    universe = [f"d{i:02}" for i in range(draw(st.integers(N, 20)))]
    used = draw(st.permutations(universe))[:N]
    blocks = tuple((draw(st.sampled_from(NODES)), d) for d in used)
    index = draw(st.integers(0, N - 1))
    answering = draw(cells(min_domains=len(universe), max_domains=len(universe)))
    if draw(st.booleans()):  # the lost node still listed (say, the map is a scan old)
        answering[blocks[index][1]] = sorted({*answering[blocks[index][1]], blocks[index][0]})
    return Stripe(draw(st.integers(0, 100)), draw(st.integers(1, 1 << 30)), blocks=blocks), index, answering


@settings(max_examples=300, deadline=None)
@given(stripes())
def test_a_lost_block_goes_to_a_domain_its_stripe_does_not_use_never_to_its_lost_node(case):
    stripe, index, domains = case
    lost_node, lost_domain = stripe.blocks[index]
    others = {d for i, (_, d) in enumerate(stripe.blocks) if i != index}
    free = {d for d, nodes in domains.items() if d not in others and d != lost_domain and set(nodes) - {lost_node}}
    if not free:
        with pytest.raises(FailedPrecondition):
            target(stripe, index, domains, node_answers=False)
        return
    node, domain = target(stripe, index, domains, node_answers=False)
    assert domain not in others  # still one block per failure domain
    assert domain in free and node in domains[domain]  # a node that answers and serves that domain
    assert node != lost_node


@settings(max_examples=100, deadline=None)
@given(stripes())
def test_a_block_whose_node_answers_is_rebuilt_in_place(case):
    stripe, index, domains = case
    assert target(stripe, index, domains, node_answers=True) == stripe.blocks[index]
