"""Mixture of Assessment Experts (Gamma): the module, its router, and insertion into backbone blocks."""
from .insertion import (
    TOWERS,
    experts_bypassed,
    find_moae,
    insert_moae,
    routing_recorded,
    set_forced_expert,
    tower_blocks,
)
from .moae import MixtureOfAssessmentExperts, mix_experts, split_ffn
from .router import DEFAULT_ROUTER_INIT_STD, Router

__all__ = [
    "TOWERS", "experts_bypassed", "find_moae", "insert_moae", "routing_recorded", "set_forced_expert",
    "tower_blocks", "MixtureOfAssessmentExperts", "mix_experts", "split_ffn", "DEFAULT_ROUTER_INIT_STD",
    "Router",
]
