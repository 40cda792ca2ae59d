"""Bi-level meta step (GRMP-IQA Eq. 4-6) against closed forms and a manual module computation."""
import pytest
import torch

from perceptiq.backbones import create_backbone
from perceptiq.models.grmp import GRMPModel, grmp_quality_loss
from perceptiq.training.meta import meta_step, model_loss_fn



def quadratic_loss(params, batch):
    """L(theta; (A, b)) = 1/2 theta^T A theta - b^T theta; grad = A theta - b, Hessian = A."""
    A, b = batch
    theta = torch.cat([params["w"], params["v"]])
    return 0.5 * theta @ A @ theta - b @ theta


def spd(generator, n=3):
    m = torch.randn(n, n, generator=generator)
    return m @ m.t() / n + torch.eye(n)


@pytest.fixture()
def problem():
    gen = torch.Generator().manual_seed(0)
    tasks = [((spd(gen), torch.randn(3, generator=gen)), (spd(gen), torch.randn(3, generator=gen)))
             for _ in range(3)]
    theta = torch.randn(3, generator=gen)
    return tasks, theta


def as_params(theta):
    return {"w": theta[:2].clone().requires_grad_(), "v": theta[2:].clone().requires_grad_()}


def flat(params):
    return torch.cat([params["w"].detach(), params["v"].detach()])


def closed_form_first_order(theta, tasks, alpha, beta):
    # theta'' = (I - a A_q)(I - a A_s) theta + a (I - a A_q) b_s + a b_q     (Eq. 4-5)
    I = torch.eye(3)
    deltas = []
    for (A_s, b_s), (A_q, b_q) in tasks:
        theta_2 = (I - alpha * A_q) @ (I - alpha * A_s) @ theta + alpha * (I - alpha * A_q) @ b_s + alpha * b_q
        deltas.append(theta - theta_2)
    delta = torch.stack(deltas).mean(0)
    return theta - beta * delta, delta                                       # Eq. 6


def test_first_order_step_equals_the_closed_form(problem):
    tasks, theta = problem
    params = as_params(theta)
    result = meta_step(params, tasks, quadratic_loss, alpha=0.1, beta=0.5)
    expected, delta = closed_form_first_order(theta, tasks, 0.1, 0.5)
    torch.testing.assert_close(flat(params), expected)
    torch.testing.assert_close(torch.cat([result.outer_grad["w"], result.outer_grad["v"]]), delta)
    A_s, b_s = tasks[0][0]
    assert result.support_losses[0] == pytest.approx(float(0.5 * theta @ A_s @ theta - b_s @ theta), rel=1e-5)
    assert len(result.query_losses) == 3


def test_second_order_step_equals_the_closed_form(problem):
    tasks, theta = problem
    alpha, beta = 0.1, 0.5
    I = torch.eye(3)
    deltas = []
    for (A_s, b_s), (A_q, b_q) in tasks:
        theta_1 = theta - alpha * (A_s @ theta - b_s)
        # alpha * grad_S(theta) + alpha * (I - alpha A_s) grad_Q(theta')
        deltas.append(alpha * (A_s @ theta - b_s) + alpha * (I - alpha * A_s) @ (A_q @ theta_1 - b_q))
    expected = theta - beta * torch.stack(deltas).mean(0)
    params = as_params(theta)
    meta_step(params, tasks, quadratic_loss, alpha=alpha, beta=beta, second_order=True)
    torch.testing.assert_close(flat(params), expected)
    first = as_params(theta)
    meta_step(first, tasks, quadratic_loss, alpha=alpha, beta=beta)
    assert not torch.allclose(flat(first), expected)


def test_vectorised_tasks_equal_the_loop(problem):
    tasks, theta = problem
    looped, vmapped = as_params(theta), as_params(theta)
    meta_step(looped, tasks, quadratic_loss, alpha=0.1, beta=0.5)
    meta_step(vmapped, tasks, quadratic_loss, alpha=0.1, beta=0.5, vectorize=True)
    torch.testing.assert_close(flat(vmapped), flat(looped))


def test_outer_sgd_with_lr_beta_is_eq6_and_adam_first_step_is_normalised(problem):
    tasks, theta = problem
    expected, delta = closed_form_first_order(theta, tasks, 0.1, 0.3)
    params = as_params(theta)
    meta_step(params, tasks, quadratic_loss, alpha=0.1, outer_optimizer=torch.optim.SGD(params.values(), lr=0.3))
    torch.testing.assert_close(flat(params), expected)
    # Adam's first step: m_hat = Delta, v_hat = Delta^2  ->  theta - beta * Delta / (|Delta| + eps)
    params = as_params(theta)
    meta_step(params, tasks, quadratic_loss, alpha=0.1, outer_optimizer=torch.optim.Adam(params.values(), lr=0.01))
    torch.testing.assert_close(flat(params), theta - 0.01 * delta / (delta.abs() + 1e-8))


def test_reduce_fn_sees_the_mean_delta(problem):
    tasks, theta = problem
    _, delta = closed_form_first_order(theta, tasks, 0.1, 1.0)
    params = as_params(theta)
    meta_step(params, tasks, quadratic_loss, alpha=0.1, beta=1.0, reduce_fn=lambda ds: [2 * d for d in ds])
    torch.testing.assert_close(flat(params), theta - 2 * delta)


def test_bad_calls_are_refused(problem):
    tasks, theta = problem
    params = as_params(theta)
    with pytest.raises(ValueError, match="exactly one of beta"):
        meta_step(params, tasks, quadratic_loss, alpha=0.1)
    with pytest.raises(ValueError, match="exactly one of beta"):
        meta_step(params, tasks, quadratic_loss, alpha=0.1, beta=0.1,
                  outer_optimizer=torch.optim.SGD(params.values(), lr=0.1))
    with pytest.raises(ValueError, match=r"does not hold parameters \['v'\]"):
        meta_step(params, tasks, quadratic_loss, alpha=0.1, outer_optimizer=torch.optim.SGD([params["w"]], lr=0.1))
    with pytest.raises(ValueError, match="no tasks"):
        meta_step(params, [], quadratic_loss, alpha=0.1, beta=0.1)
    uneven = [tasks[0], ((torch.eye(2), torch.ones(2)), tasks[1][1])]
    with pytest.raises(ValueError, match="support batches differ in shape"):
        meta_step(params, uneven, quadratic_loss, alpha=0.1, beta=0.1, vectorize=True)


def test_functional_path_equals_a_manual_module_computation_on_test_tiny():
    model = GRMPModel(create_backbone("test-tiny", "random"), n_visual_tokens=2).train()
    gen = torch.Generator().manual_seed(3)

    def batch(n):
        return torch.randn(n, 3, 224, 224, generator=gen), torch.rand(n, generator=gen)

    tasks = [(batch(3), batch(2)), (batch(3), batch(2))]
    alpha, beta = 0.5, 0.7
    params = model.trainable_parameters()
    theta = {k: p.detach().clone() for k, p in params.items()}

    # manual: move the module's own parameters through Eq. 4-5 with autograd, per task
    delta = {k: torch.zeros_like(v) for k, v in theta.items()}
    for support, query in tasks:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(theta[k])
        for pixels, targets in (support, query):
            loss = grmp_quality_loss(model(pixels).scores, targets)
            grads = torch.autograd.grad(loss, list(params.values()))
            with torch.no_grad():
                for p, g in zip(params.values(), grads):
                    p.sub_(alpha * g)
        for k, p in params.items():
            delta[k] += (theta[k] - p.detach()) / len(tasks)
    expected = {k: theta[k] - beta * delta[k] for k in theta}
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(theta[k])

    result = meta_step(params, tasks, model_loss_fn(model), alpha=alpha, beta=beta)
    for k in theta:
        torch.testing.assert_close(result.outer_grad[k], delta[k], atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(params[k].detach(), expected[k], atol=1e-6, rtol=1e-4)
        assert not torch.allclose(params[k].detach(), theta[k])
