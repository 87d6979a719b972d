"""Attribution-robustness metrics between batches of maps: (N, D) tensors in, N values out."""

from attrobust.metrics.center import center_of_mass, center_shift
from attrobust.metrics.ranks import average_ranks, kendall_tau_b, spearman_rho
from attrobust.metrics.topk import top_k_indices, top_k_mask, topk_intersection

__all__ = ["average_ranks", "center_of_mass", "center_shift", "kendall_tau_b", "spearman_rho", "top_k_indices",
           "top_k_mask", "topk_intersection"]
