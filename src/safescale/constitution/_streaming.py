"""Streaming output classification with a key/value cache: O(new tokens) per step.

A :class:`StreamSession` follows one batch of generations. Each call gives, for some rows, the
response text so far; the session tokenizes the exchange, keeps the longest prefix it has
already read, and feeds only the rest through the classifier with the cache of everything
before (``past_key_values``), so a step costs a forward over the new tokens, not over the whole
exchange.

The rows of a batch share one cache. A step's new tokens are left-padded to the widest row's
and the padding is masked out for good; when the text's tokenization changes behind the end
(byte-level BPE can merge the last token with the next characters), the positions that changed
are masked out too and read again at their logical positions (the rotary position ids follow
the row's own count, not the cache's width). The scores therefore equal one full forward over
the final exchange (:meth:`ConstitutionalClassifier.scores`, the reference), which a test
checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from safescale.constitution._classifier import ConstitutionalClassifier


class StreamSession:
    """Scores of growing responses to ``prompts`` (one row per prompt), read incrementally."""

    def __init__(self, classifier: ConstitutionalClassifier, prompts: Sequence[str]) -> None:
        import torch
        from transformers import DynamicCache

        self.classifier = classifier
        self.prompts = list(prompts)
        model = classifier.model
        self.device = model.device
        self.cache = DynamicCache(config=model.config)
        self.mask = torch.zeros(len(prompts), 0, dtype=torch.long, device=self.device)
        self.ids: list[list[int]] = [[] for _ in prompts]
        """Per row: the tokens read so far, in logical order."""
        self.cols: list[list[int]] = [[] for _ in prompts]
        """Per row: the cache column holding each token read."""
        self.values: list[list[float]] = [[] for _ in prompts]
        """Per row: the score at each token read."""
        self.start = [0] * len(prompts)
        self.tokens_read = 0
        """Tokens fed through the model (all rows): the work the cache leaves to do."""
        self.forwards = 0

    def scores(self, rows: Sequence[int], texts: Sequence[str]) -> list[float]:
        """The score of each listed row's response ``texts`` so far: the maximum over its
        prefixes, as :meth:`ConstitutionalClassifier.scores` gives for the same text."""
        import torch

        from safescale.constitution._classifier import exchange_ids

        tok = self.classifier.tokenizer
        feeds: dict[int, list[int]] = {}
        for r, text in zip(rows, texts, strict=True):
            ids, start = exchange_ids(tok, self.prompts[r], text, 1 << 30)
            self.start[r] = start
            old = self.ids[r]
            common = 0
            for a, b in zip(old, ids, strict=False):
                if a != b:
                    break
                common += 1
            if common < len(old):  # re-tokenized tail: forget it, read it again
                for c in self.cols[r][common:]:
                    self.mask[r, c] = 0
                del self.ids[r][common:], self.cols[r][common:], self.values[r][common:]
            if len(ids) > common:
                feeds[r] = ids[common:]
        width = max((len(f) for f in feeds.values()), default=0)
        if width:
            n = len(self.prompts)
            base = self.mask.shape[1]
            pad = self.classifier.model.config.pad_token_id or 0
            ids_t = torch.full((n, width), pad, dtype=torch.long)
            new_mask = torch.zeros(n, width, dtype=torch.long)
            pos = torch.zeros(n, width, dtype=torch.long)
            for r, f in feeds.items():
                k = len(f)
                ids_t[r, width - k :] = torch.tensor(f)
                new_mask[r, width - k :] = 1
                pos[r, width - k :] = torch.arange(len(self.ids[r]), len(self.ids[r]) + k)
            self.mask = torch.cat([self.mask, new_mask.to(self.device)], dim=1)
            with torch.no_grad():
                logits = self.classifier.model(
                    input_ids=ids_t.to(self.device),
                    attention_mask=self.mask,
                    position_ids=pos.to(self.device),
                    past_key_values=self.cache,
                    use_cache=True,
                ).logits[..., 0]
            probs = torch.sigmoid(logits.float()).cpu()
            self.forwards += 1
            for r, f in feeds.items():
                k = len(f)
                self.ids[r] += f
                self.cols[r] += list(range(base + width - k, base + width))
                self.values[r] += probs[r, width - k :].tolist()
                self.tokens_read += k
        return [max(self.values[r][self.start[r] :], default=0.0) for r in rows]


def stream_scores(
    classifier: ConstitutionalClassifier, prompts: Sequence[str], responses: Sequence[str]
) -> list[list[float]]:
    """Replay ``responses`` token by token through one :class:`StreamSession`.

    Returns, per response, the session's score after each of the classifier's tokens (a
    stream's view); a helper for tests and benchmarks that have no generator at hand.
    """
    tok = classifier.tokenizer
    pieces = []
    for r in responses:
        ids = tok(r.strip(), add_special_tokens=False)["input_ids"]
        pieces.append([tok.decode(ids[: i + 1]) for i in range(len(ids))])
    session = StreamSession(classifier, prompts)
    out: list[list[float]] = [[] for _ in responses]
    for step in range(max((len(p) for p in pieces), default=0)):
        rows = [i for i, p in enumerate(pieces) if step < len(p)]
        values = session.scores(rows, [pieces[i][step] for i in rows])
        for i, v in zip(rows, values, strict=True):
            out[i].append(v)
    return out
