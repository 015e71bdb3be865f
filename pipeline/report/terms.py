"""The report's front and back matter: the Terms it uses (each defined before the findings use it) and the
References its citations point to (only the works it cites, each cited at least once).
"""

from __future__ import annotations

from typing import Any, Iterable

from ..run.probe import REGIME_BAND
from ..run.verdicts import LEARNED_MARGIN, UNSTABLE_LOSS_GROWTH, UNSTABLE_NORM_GROWTH
from .document import Bullets, Cite, Inline, Paragraph, ReferenceList, Section, Table
from .references import REFERENCES


def terms_section(has_text: bool = False) -> Section:
    """What the findings' words mean, in the order a reader meets them; `has_text`: a text spec is reported."""
    m = f"{LEARNED_MARGIN:.0%}"
    items: list[list[Inline]] = [
        ["γ_W and γ_φ: γ_W = ‖W_hh‖₂, the largest singular value of the recurrent weight matrix; a spec's gamma_w "
         "setting fixes it at initialisation (for sparse init it fixes the spectral radius ρ instead). γ_φ = "
         "sup|φ′|, the activation's steepest slope (1 for tanh, ¼ for sigmoid). The theorem: ‖∂h_t/∂h_k‖ ≤ "
         "(γ_W γ_φ)^(t−k) (", Cite("pascanu2013"), "), so γ_W γ_φ < 1 is sufficient for vanishing gradients, the "
         "loss of long-range credit described by ", Cite("bengio1994"), "."],
        ["Probe: a fixed input sequence run through a run's model at initialisation and after training; on it "
         "every Jacobian norm ‖∂h_t/∂h_k‖ between the hidden states at steps k < t is computed exactly. The lag is "
         "t − k; a pair is one (t, k)."],
        ["Slope: the least-squares slope of log‖∂h_t/∂h_k‖ against the lag, in nats per step (natural log: a "
         "slope of −0.1 multiplies the norm by e^−0.1 ≈ 0.9 per step). Observed regime: vanishing below "
         f"−{REGIME_BAND:g}, neutral within ±{REGIME_BAND:g}, exploding above +{REGIME_BAND:g} nats per step."],
        ["Decades: orders of ten (log10). A bound 1 decade above the measured norm is ten times it."],
        ["Driven Lyapunov exponent λ₁: the mean log growth per step of the most expanded direction of the "
         "Jacobian products along a trajectory driven by the task's inputs, after a burn-in (", Cite("engelken2020"),
         "). It is the value the slope approaches as the probe grows. Its spread is the largest minus the smallest "
         "of its estimates on independent trajectories."],
        ["Mean-field rate λ_MF: the slope predicted from the initial weights' and inputs' statistics alone, for a "
         "wide layer with i.i.d. weights (", Cite("poole2016"), "; ", Cite("chen2018"), ")."],
        ["Spread of a singular spectrum: log10(σ₁/σ_min) of ∂h_T/∂h_0, in decades: how unequally the directions "
         "of the state pass through T steps."],
        [f"Beat chance, learned, solved: a run beat chance when its final validation loss is more than {m} below "
         "the task's chance loss (the loss of a model that ignores its inputs; at chance: within "
         f"{m} of it either side; worse than chance: above that); it learned when that loss is also more than "
         f"{m} below the partial baseline, the loss of the best model that carries only part of what the task needs "
         "(adding: one of the two values; temporal order: one of the two symbols; copy: the memoryless model; text: "
         "the bigram model; a loss a few per cent below it is within the noise of a finite validation set); it solved "
         "the task when at least 99 % of the held-out sequences are right (the papers' bar). A count is written k "
         "of n runs with its Wilson 95% interval (", Cite("wilson1927"), "), the range of success rates the n runs "
         "are consistent with."],
        [f"Outcomes: ok; unstable (finite, but the training loss ended over {UNSTABLE_LOSS_GROWTH:g}× its first "
         f"value or ‖W_hh‖₂ grew over {UNSTABLE_NORM_GROWTH:g}×); diverged (inf or NaN); failed (an error)."],
        ["Bound check and spot check: the bound check compares every measured norm with three upper bounds (the "
         "step-norm, product and global bounds, docs/math.md section 4). It holds by construction, so it is a "
         "sanity check of the bookkeeping, not evidence. The spot check is the independent one: it recomputes "
         "sampled pairs from the forward equations alone, by finite differences."],
        ["Remedies: the LSTM (", Cite("hochreiter1997"), "), the GRU (", Cite("cho2014"), "), the IRNN, ReLU units "
         "with W_hh initialised to the identity (", Cite("le2015"), "), orthogonal initialisation (", Cite("saxe2014"),
         "), the expRNN, whose W_hh stays orthogonal through training (", Cite("lezcano2019"), "; after the unitary "
         "RNN of ", Cite("arjovsky2016"), "), and gradient clipping with the regulariser Ω (", Cite("pascanu2013"),
         ")."],
    ]
    if has_text:
        items.append(["Text: a character-level model of a corpus, trained and sampled as min-char-rnn does (",
                      Cite("karpathy2015"), "); its loss is in nats per character."])
    return Section("terms", "Terms", [Bullets(items)], [])


def cited_keys(sections: Iterable[Section]) -> list[str]:
    """The reference keys the sections cite, in the order they are first cited."""
    keys: dict[str, None] = {}
    for section in sections:
        for part in inline_parts(section.blocks):
            if isinstance(part, Cite):
                keys.setdefault(part.key, None)
    return list(keys)


def inline_parts(blocks: list) -> Iterable[Any]:
    for block in blocks:
        if isinstance(block, Paragraph):
            yield from block.parts
        elif isinstance(block, Bullets):
            for item in block.items:
                yield from item
        elif isinstance(block, Table):
            for row in block.rows:
                yield from row


def references_section(sections: list[Section]) -> Section:
    """Every work the sections cite, alphabetically by first author (as REFERENCES lists them)."""
    cited = set(cited_keys(sections))
    keys = [r.key for r in REFERENCES if r.key in cited]
    intro = Paragraph(["The works cited above; docs/math.md gives the derivations that rest on them."])
    return Section("references", "References", [intro, ReferenceList(keys)], [])
