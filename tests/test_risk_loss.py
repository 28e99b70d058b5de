"""The minimum-risk training loss of the first answer token (`trainer.risk_term`): what a model
learns from every stored list's measured losses is the list of smallest expected size, not the
list that most often wins -- the single answer a geomean of sizes rewards."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from clang_llm.train.trainer import risk_term  # noqa: E402

# Four modules a model cannot tell apart (rows), three stored lists (columns: `Oz`, 1, 2; losses
# log(.text / -Oz .text)). List 1 wins three modules and grows the fourth by 35 %; list 2 never
# wins but always helps: its mean loss is the smallest.
LOSSES = [[0.0, -0.05, -0.02], [0.0, -0.05, -0.02], [0.0, -0.05, -0.02], [0.0, 0.30, -0.02]]


def _fit(loss_of_rows: object, steps: int = 600) -> torch.Tensor:
    """One shared logit vector (over a 5-token vocabulary: 3 choices + 2 other tokens) fitted to
    all rows at once, as a model that sees the same prompt for every module."""
    logits = torch.zeros(5, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    for _ in range(steps):
        logp = torch.log_softmax(logits, dim=0).expand(len(LOSSES), 5)
        loss = loss_of_rows(logp).mean()  # type: ignore[operator]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.log_softmax(logits.detach(), dim=0)


def _risk(logp: torch.Tensor, lam: float = 0.01) -> torch.Tensor:
    ids = torch.tensor([[0, 1, 2]] * len(LOSSES))
    return risk_term(logp, ids, torch.tensor(LOSSES), torch.ones(len(LOSSES), 3, dtype=torch.bool), lam)


def test_risk_term_learns_the_list_of_smallest_mean_loss() -> None:
    lp = _fit(_risk)
    assert int(lp.argmax()) == 2
    # the mass stays on the measured choices (the other tokens are never the greedy answer)
    assert float(lp[:3].exp().sum()) > 0.95
    # the optimum is softmax(-mean loss / lambda) over the choices
    mean = torch.tensor(LOSSES).mean(dim=0)
    want = torch.softmax(-mean / 0.01, dim=0)
    got = torch.softmax(lp[:3], dim=0)
    assert torch.allclose(got, want, atol=0.03)


def test_soft_cross_entropy_of_winners_would_pick_the_frequent_winner() -> None:
    """The contrast that motivates the risk term: the soft cross-entropy of each module's
    winner distribution (the ranking targets) puts list 1 first."""
    targets = torch.softmax(-torch.tensor(LOSSES) / 0.01, dim=1)

    def ce(logp: torch.Tensor) -> torch.Tensor:
        return -(targets * logp[:, :3]).sum(dim=1)

    assert int(_fit(ce)[:3].argmax()) == 1


def test_risk_term_is_zero_at_its_optimum_and_ignores_unmeasured_slots() -> None:
    loss = torch.tensor([[0.0, -0.05, 0.0]])
    mask = torch.tensor([[True, True, False]])  # the third slot is padding
    ids = torch.tensor([[0, 1, 0]])
    gibbs = torch.softmax(-loss[0, :2] / 0.01, dim=0)
    logp = torch.log(torch.tensor([[gibbs[0], gibbs[1], 0.0, 0.0]]).clamp(min=1e-30))
    assert float(risk_term(logp, ids, loss, mask, 0.01)[0]) == pytest.approx(0.0, abs=1e-5)
    # mass elsewhere costs -log P(measured choices); a row with no measured choice costs nothing
    half = torch.log(torch.tensor([[gibbs[0] / 2, gibbs[1] / 2, 0.5, 1e-30]]))
    assert float(risk_term(half, ids, loss, mask, 0.01)[0]) == pytest.approx(math.log(2), abs=1e-5)
    none = torch.zeros(1, 3, dtype=torch.bool)
    assert float(risk_term(half, ids, loss, none, 0.01)[0]) == 0.0
