"""Bi-level meta step for the prompt pre-training (GRMP-IQA section 3.3, Eq. 4-6), on ``torch.func``.

For each task i of a meta-batch of k tasks (support set S_i, query set Q_i):

    theta'_i  = theta    - alpha * grad L(theta;    S_i)              (Eq. 4, inner loop)
    theta''_i = theta'_i - alpha * grad L(theta'_i; Q_i)              (Eq. 5, second level)
    Delta     = (1/k) sum_i (theta - theta''_i)
    theta    <- theta - beta * Delta                                   (Eq. 6, outer update)

Eq. 5 uses alpha (the paper prints alpha in both inner updates and beta only in Eq. 6). The update is
first order: theta''_i is not differentiated through (Reptile-like); ``second_order=True`` is a labelled
MAML variant that keeps Eq. 6's form but differentiates the query loss through Eq. 4:

    Delta_i = alpha * grad L(theta; S_i) + alpha * d/dtheta [ L(theta - alpha grad L(theta; S_i); Q_i) ]

(= the first-order Delta_i with the Jacobian (I - alpha * Hessian_S) kept in the second term).

How Adam enters (the paper: "learning rates alpha, beta = 1e-4, 1e-2 ... 50 epochs using Adam"): the inner
updates are the plain gradient steps of Eq. 4-5 (a fresh per-task adaptation has no optimizer state to
carry); the outer pseudo-gradient Delta is written into ``.grad`` and stepped by ``outer_optimizer``
(Adam with lr = beta in the paper's setting). Without an optimizer, ``beta`` applies Eq. 6 literally.

Parameters are a dict ``name -> tensor`` (the prompt parameters of a ``GRMPModel``); ``loss_fn(params,
batch) -> scalar`` evaluates the model functionally (``model_loss_fn`` builds it with
``torch.func.functional_call``; every other weight stays the module's own, frozen).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch.func import functional_call, grad_and_value, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

Params = dict[str, torch.Tensor]
LossFn = Callable[[Params, Any], torch.Tensor]
Task = tuple[Any, Any]   # (support batch, query batch)


@dataclass(frozen=True)
class MetaConfig:
    """Meta-training settings; defaults are the paper's (alpha, beta, epochs) and MetaIQA's (the rest).

    The training loop (not this module) uses ``tasks_per_step``, ``support_fraction`` and the decay.
    """

    alpha: float = 1e-4            # inner rate, Eq. 4-5
    beta: float = 1e-2             # outer rate, Eq. 6 (Adam's lr)
    epochs: int = 50
    tasks_per_step: int = 5        # k (MetaIQA)
    support_fraction: float = 0.8  # support/query split of each task (MetaIQA: 80/20)
    lr_decay: float = 0.9          # MetaIQA: lr x 0.9 ...
    decay_every_epochs: int = 2    # ... every 2 epochs
    second_order: bool = False


def model_loss_fn(model: torch.nn.Module, objective: Callable | None = None) -> LossFn:
    """``loss_fn(params, (pixels, targets))`` = objective(model's p(high|x) with ``params`` swapped in, y).

    The model must return a ``ScoreOutput`` (or a tensor) from ``forward(pixels)``; ``objective`` defaults
    to Eq. 3 (``grmp_quality_loss``).
    """
    if objective is None:
        from ..models.grmp import grmp_quality_loss as objective

    def loss_fn(params: Params, batch) -> torch.Tensor:
        pixels, targets = batch
        output = functional_call(model, params, (pixels,))
        scores = output.scores if hasattr(output, "scores") else output
        return objective(scores, targets)

    return loss_fn


def _adapt(loss_fn: LossFn, theta: Params, support, query, alpha: float,
           second_order: bool) -> tuple[Params, torch.Tensor, torch.Tensor]:
    """One task: -> (Delta_i = theta - theta''_i, support loss at theta, query loss at theta'_i)."""
    grad_loss = grad_and_value(loss_fn)
    g_support, loss_support = grad_loss(theta, support)                      # Eq. 4
    if not second_order:
        theta_1 = {k: theta[k] - alpha * g_support[k] for k in theta}
        g_query, loss_query = grad_loss(theta_1, query)                      # Eq. 5
        return ({k: alpha * (g_support[k] + g_query[k]) for k in theta},     # theta - theta''
                loss_support, loss_query)

    def query_after_inner(th: Params) -> torch.Tensor:
        g, _ = grad_and_value(loss_fn)(th, support)
        return loss_fn({k: th[k] - alpha * g[k] for k in th}, query)

    # Fused attention kernels (flash / memory-efficient) have no double backward; the math one has.
    with sdpa_kernel([SDPBackend.MATH]):
        g_query_through, loss_query = grad_and_value(query_after_inner)(theta)
    return ({k: alpha * (g_support[k] + g_query_through[k]) for k in theta}, loss_support, loss_query)


def _stack(batches: Sequence[Any], where: str):
    """Stack equal-shaped batches (tensors, or tuples/lists of tensors) along a new task dimension."""
    first = batches[0]
    if isinstance(first, torch.Tensor):
        shapes = {tuple(b.shape) for b in batches}
        if len(shapes) != 1:
            raise ValueError(f"meta_step(vectorize=True): {where} batches differ in shape {sorted(shapes)}; "
                             "use equal-sized tasks or vectorize=False")
        return torch.stack(list(batches))
    if isinstance(first, (tuple, list)):
        return type(first)(_stack([b[i] for b in batches], where) for i in range(len(first)))
    raise TypeError(f"meta_step: cannot stack {where} batches of type {type(first).__name__}")


@dataclass
class MetaStepResult:
    params: Params                    # the updated parameters (same tensors as given, changed in place)
    outer_grad: Params                # Delta = mean_i (theta - theta''_i)
    support_losses: list[float]       # L(theta; S_i) per task
    query_losses: list[float]         # L(theta'_i; Q_i) per task


def meta_step(params: dict[str, torch.Tensor], tasks: Sequence[Task], loss_fn: LossFn, *, alpha: float,
              beta: float | None = None, outer_optimizer: torch.optim.Optimizer | None = None,
              second_order: bool = False, vectorize: bool = False,
              reduce_fn: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None) -> MetaStepResult:
    """One meta-batch update of ``params`` in place (Eq. 4-6).

    params: name -> parameter (leaf tensors; a model's prompt parameters for ``model_loss_fn``).
    tasks: k pairs (support batch, query batch).
    alpha: inner rate (Eq. 4-5). Exactly one of ``beta`` (plain Eq. 6: theta -= beta * Delta) or
        ``outer_optimizer`` (Delta is written to ``.grad`` and the optimizer steps; its lr plays beta).
    vectorize: ``torch.func.vmap`` over tasks (all support batches of one shape, all query batches of
        one shape); default: a loop over tasks.
    reduce_fn: applied to the list of Delta tensors before the update (DDP: average over ranks whose
        tasks differ).
    """
    if not tasks:
        raise ValueError("meta_step: no tasks in the meta-batch")
    if (beta is None) == (outer_optimizer is None):
        raise ValueError("meta_step: give exactly one of beta (plain Eq. 6) or outer_optimizer (its lr is beta)")
    if not params:
        raise ValueError("meta_step: params is empty")
    if outer_optimizer is not None:
        stepped = {id(p) for group in outer_optimizer.param_groups for p in group["params"]}
        missing = [name for name, p in params.items() if id(p) not in stepped]
        if missing:
            raise ValueError(f"meta_step: outer_optimizer does not hold parameters {missing}")
    theta = {name: p.detach() for name, p in params.items()}

    if vectorize:
        supports = _stack([support for support, _ in tasks], "support")
        queries = _stack([query for _, query in tasks], "query")
        per_task = vmap(lambda s, q: _adapt(loss_fn, theta, s, q, alpha, second_order),
                        in_dims=(0, 0), randomness="same")
        deltas, support_losses, query_losses = per_task(supports, queries)
        delta = {k: v.mean(dim=0) for k, v in deltas.items()}
        support_losses, query_losses = support_losses.tolist(), query_losses.tolist()
    else:
        delta = {k: torch.zeros_like(v) for k, v in theta.items()}
        support_losses, query_losses = [], []
        for support, query in tasks:
            delta_i, loss_s, loss_q = _adapt(loss_fn, theta, support, query, alpha, second_order)
            for k in delta:
                delta[k] += delta_i[k] / len(tasks)
            support_losses.append(float(loss_s))
            query_losses.append(float(loss_q))

    if reduce_fn is not None:
        names = list(delta)
        delta = dict(zip(names, reduce_fn([delta[k] for k in names])))

    with torch.no_grad():
        if outer_optimizer is None:
            for name, p in params.items():
                p.sub_(beta * delta[name].to(p.dtype))                       # Eq. 6
        else:
            for name, p in params.items():
                p.grad = delta[name].to(p.dtype).clone()
            outer_optimizer.step()
    return MetaStepResult(params=params, outer_grad=delta, support_losses=support_losses,
                          query_losses=query_losses)
