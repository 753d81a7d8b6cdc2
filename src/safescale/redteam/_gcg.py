"""GCG: a greedy coordinate-gradient search for an adversarial suffix on a white-box model.

Zou et al. 2023, "Universal and Transferable Adversarial Attacks on Aligned Language Models":
the suffix's tokens are relaxed to one-hot vectors; the gradient of the loss of an affirmative
target (here the lab's compliance opening, `` Sure. To make {compound}, combine``) with respect
to them ranks replacement tokens per position; a batch of single-token swaps drawn from each
position's top-k is scored exactly and the best one kept. Every ``steps`` optimisation steps
the run sends its current prompt to the target (one query). Forward passes of the optimisation
are the white-box cost, reported in the recipe; queries are what the budget counts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from safescale._errors import Problem, UserError
from safescale.redteam._attacks import ATTACKS, AttackContext, AttackRun, Feedback, Proposal
from safescale.redteam._behaviours import Behaviour


class GCGSearch:
    """The optimisation state for one behaviour on one local model."""

    def __init__(
        self,
        target: Any,
        behaviour: Behaviour,
        rng: random.Random,
        *,
        suffix_len: int = 8,
        top_k: int = 32,
        candidates: int = 64,
    ) -> None:
        import torch

        from safescale.lab import COMPLIANCE_OPENING

        self.lm, self.target = target.lm, target
        self.top_k, self.n_cand = top_k, candidates
        self.gen = torch.Generator().manual_seed(rng.randrange(2**31))
        tok = self.lm.tokenizer
        pre_text, post_text = target.format(behaviour.request + " \x00").split("\x00")
        self.pre = self.lm.encode(pre_text)
        self.post = self.lm.encode(post_text)
        goal = f" {COMPLIANCE_OPENING}" + (
            f" To make {behaviour.compound}, combine" if behaviour.compound else ""
        )
        self.goal = self.lm.encode(goal)
        vocab = self.lm.vocab_size
        # Tokens a user could type: no special tokens, no line breaks (they end the turn).
        special = set(tok.all_special_ids)
        self.allowed = torch.tensor(
            [i not in special and "\n" not in tok.decode([i]) for i in range(vocab)]
        )
        pool = self.allowed.nonzero().squeeze(1)
        pick = torch.randint(len(pool), (suffix_len,), generator=self.gen)
        self.suffix = pool[pick].tolist()
        self.loss = self._losses([self.suffix])[0]
        self.forwards = 1

    def _ids(self, suffix: Sequence[int]) -> list[int]:
        return [*self.pre, *suffix, *self.post, *self.goal]

    def _losses(self, suffixes: Sequence[Sequence[int]]) -> list[float]:
        import torch
        import torch.nn.functional as F

        ids = torch.tensor([self._ids(s) for s in suffixes], device=self.lm.device)
        n = len(self.goal)
        with torch.inference_mode():
            logits = self.lm.model(input_ids=ids).logits[:, -n - 1 : -1].float()
        tgt = ids[:, -n:]
        return F.cross_entropy(logits.transpose(1, 2), tgt, reduction="none").mean(1).tolist()

    def step(self) -> float:
        """One GCG step; returns the loss of the suffix kept."""
        import torch
        import torch.nn.functional as F

        model = self.lm.model
        emb = model.get_input_embeddings().weight  # (V, d)
        L = len(self.suffix)
        one_hot = torch.zeros(L, emb.shape[0], device=emb.device, dtype=emb.dtype)
        one_hot[torch.arange(L), torch.tensor(self.suffix)] = 1.0
        one_hot.requires_grad_(True)
        ids = torch.tensor([self._ids(self.suffix)], device=emb.device)
        embeds = emb[ids].detach()
        start = len(self.pre)
        embeds = torch.cat([embeds[:, :start], (one_hot @ emb)[None], embeds[:, start + L :]], 1)
        n = len(self.goal)
        with torch.enable_grad():
            logits = model(inputs_embeds=embeds).logits[0, -n - 1 : -1].float()
            loss = F.cross_entropy(logits, ids[0, -n:])
            (grad,) = torch.autograd.grad(loss, one_hot)
        grad = grad.masked_fill(~self.allowed.to(grad.device), float("inf"))
        top = (-grad).topk(self.top_k, dim=1).indices  # (L, k): most loss-reducing swaps
        pos = torch.randint(L, (self.n_cand,), generator=self.gen)
        choice = torch.randint(self.top_k, (self.n_cand,), generator=self.gen)
        cands = []
        for p, c in zip(pos.tolist(), choice.tolist(), strict=True):
            s = list(self.suffix)
            s[p] = int(top[p, c])
            cands.append(s)
        losses = self._losses(cands)
        self.forwards += 1 + len(cands)
        best = min(range(len(cands)), key=losses.__getitem__)
        if losses[best] < self.loss:
            self.suffix, self.loss = cands[best], losses[best]
        return self.loss

    def prompt(self, request: str) -> str:
        """The request with the current suffix, as text a user would send."""
        return f"{request} {self.lm.decode(self.suffix)}"


class _GCGRun:
    def __init__(self, search: GCGSearch, request: str, budget: int, steps: int) -> None:
        self.search, self.request, self.left, self.steps = search, request, budget, steps
        self.done = False

    def propose(self, n: int) -> list[Proposal]:
        if self.done or self.left <= 0:
            return []
        for _ in range(self.steps):
            self.search.step()
        self.left -= 1
        s = self.search
        return [Proposal(s.prompt(self.request), f"gcg@loss={s.loss:.3f}:forwards={s.forwards}")]

    def observe(self, feedback: Sequence[Feedback]) -> None:
        self.done = any(f.verdict.success for f in feedback)


@ATTACKS.register("gcg")
class GCG:
    """GCG suffix search on a local white-box target (options ``steps``, ``suffix_len``)."""

    family = "gcg"

    def start(self, behaviour: Behaviour, rng: random.Random, context: AttackContext) -> AttackRun:
        """Start a suffix search for ``behaviour`` on the campaign's local model."""
        wb = context.white_box
        if wb is None or not hasattr(wb, "lm"):
            raise UserError(
                Problem(
                    "the gcg attack needs a local model folder as target (white box)",
                    field="attacks",
                )
            )
        opts = context.options
        search = GCGSearch(wb, behaviour, rng, suffix_len=int(opts.get("suffix_len", 8)))
        return _GCGRun(search, behaviour.request, context.budget, int(opts.get("steps", 4)))
