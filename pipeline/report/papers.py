"""Published results and protocols that the remedies section puts beside this study's own numbers.

These are facts about papers, so they live here only, each with the place that states it. Only numbers read in the
cited text (or in the authors' released code, for its defaults) are here. Numbers read off a figure are left out.
Of Le, Jaitly & Hinton (2015) only the abstract's claim is quoted: their experiments' section was not read, so none
of its numbers or settings are here.

Cho et al. (2014)'s text was read, all but its tables' cells and figures (CHO_EXPERIMENTS): its one experiment is
English-to-French translation on the WMT'14 workshop's data, the RNN Encoder-Decoder with the gated unit (the GRU)
scoring the phrase pairs of a phrase-based system. No task of this study matches, so no row of PUBLISHED is theirs
and none of their BLEU scores is quoted; PROTOCOLS gives their GRU's settings, labelled as translation settings.

Of Lezcano-Casado & Martínez-Rubio (2019) only the abstract, the opening of the introduction and of appendix A could
be read here: the experiments' section (its tasks, settings and tables) was not reached. The abstract names no task
("several tasks designed to test RNNs"), so which tasks the paper's experiments use is not stated here from its text.
The authors' released code (EXPRNN_CODE) has three experiment scripts: the copying task, pixel-by-pixel MNIST
(permuted with --permute) and TIMIT, none of them adding or temporal order. This study runs the copying task too, but
in the long_range spec with the vanilla tanh RNN alone, not with the remedies arms: a copying-task number would not be
a counterpart of the expRNN arm. So no row of PUBLISHED is theirs, and the expRNN's protocol lines are its code's
defaults, said to be so: the paper's own settings are not silent but unread.
docs/math.md's references give the full entries.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..run.verdicts import SOLVED_SHARE

PASCANU_411 = "Pascanu, Mikolov & Bengio (2013), ICML, §4.1.1"
PASCANU_412 = "Pascanu, Mikolov & Bengio (2013), ICML, §4.1.2"
PASCANU_CODE = "github.com/pascanur/trainingRNNs @3f5df3f, RNN.py l.447–506"
HS_TABLE_7 = "Hochreiter & Schmidhuber (1997), Neural Computation 9(8), §5.4, Table 7"
HS_TABLE_9 = "Hochreiter & Schmidhuber (1997), Neural Computation 9(8), §5.6, Table 9"
LE_ABSTRACT = "Le, Jaitly & Hinton (2015), arXiv:1504.00941, abstract"
HS_ADDING_LSTM = "LSTM, 2 blocks of 2 cells (93 weights), learning rate 0.5"  # Table 7's model, at every T
EXPRNN_CODE = ("github.com/Lezcano/expRNN @830ec83, 1_copying.py, 2_mnist.py, 3_timit.py, orthogonal.py, "
               "initialization.py, README.md")
# the sections that state Cho et al.'s task (§4, its first paragraph and "Data and Baseline System") and their
# GRU encoder-decoder's size, initialisation and training (§4, "RNN Encoder-Decoder"); the unit is §2.3's
CHO_EXPERIMENTS = "Cho et al. (2014), EMNLP, §4"

# Pascanu et al. (2013, §4.1.1) call a run successful when under 1 % of 10 000 fresh test sequences are misclassified:
# this study's `solved` (run/verdicts.SOLVED_SHARE)
PAPER_ACCURACY = SOLVED_SHARE


@dataclass(frozen=True)
class Published:
    """One published result, and where in this study's results its counterpart is."""

    citation: str  # where the numbers are stated
    task: str  # this project's task that it matches (engine/tasks.py)
    lengths: str  # the sequence lengths, as the paper gives them
    model: str  # the model and training method
    result: str  # the published outcome, with the paper's own numbers
    arms: tuple[str, ...]  # the remedies arms (studies.REMEDY_ARMS keys) that correspond to the model
    T_range: tuple[int, int]  # this study's T compared with it: the longest T run in this range (inclusive)


PUBLISHED = (
    Published(PASCANU_411, "temporal_order", "trained on lengths drawn from 50–200 (one network for every length)",
              "tanh RNN, 50 units, “basic tanh” init, SGD (the passage does not say whether with clipping alone or with "
              "clipping and Ω)",
              "5 of 5 seeds succeeded; 0 of 10,000 test sequences misclassified at every length tested, "
              "T = 50 up to 5000", ("tanh_clipped", "tanh_clipped_omega"), (50, 200)),
    Published(PASCANU_412, "adding", "lengths up to 200 (one network for every length)",
              "tanh RNN, SGD with clipping and Ω (MSGD-CR)",
              "5 of 5 runs succeeded (a sequence wrong when its squared error exceeds 0.04); generalised to 500 steps "
              "with under 1% error", ("tanh_clipped_omega",), (1, 200)),
    Published(HS_TABLE_7, "adding", "T = 100 (lengths 100–110)",
              HS_ADDING_LSTM,
              "1 of 2560 test sequences wrong (|error| ≥ 0.04), after 74,000 training sequences; means of 10 trials",
              ("lstm",), (100, 100)),
    Published(HS_TABLE_7, "adding", "T = 500 (lengths 500–550)",
              HS_ADDING_LSTM,
              "0 of 2560 test sequences wrong, after 209,000 training sequences; means of 10 trials",
              ("lstm",), (500, 500)),
    Published(HS_TABLE_7, "adding", "T = 1000 (lengths 1000–1100)",
              HS_ADDING_LSTM,
              "1 of 2560 test sequences wrong, after 853,000 training sequences (370,000 to 2,020,000); means of "
              "10 trials", ("lstm",), (1000, 1000)),
    Published(HS_TABLE_9, "temporal_order", "lengths 100–110 (task 6a: 2 symbols, 4 classes)",
              "LSTM, 156 weights, learning rate 0.5",
              "1 of 2560 test sequences wrong (an output's |error| ≥ 0.3), after 31,390 training sequences; means "
              "of 20 trials", ("lstm",), (100, 100)),
    Published(LE_ABSTRACT, "adding", "lengths not stated in the abstract",
              "IRNN (ReLU units, W_hh initialised to the identity) against “a standard implementation of LSTMs”",
              "“comparable to” the LSTM on “two toy problems involving long-range temporal structures” (the adding "
              "problem among them); the abstract gives no numbers, and none are quoted here",
              ("irnn", "lstm"), (1, 100_000)),
)

# The protocols as published, one line per aspect a reader needs before comparing: (aspect, what the papers did),
# citing by short name (the table above them gives the full citations). The remedies section follows each line
# with this study's own setting, read from its results.
PASCANU, CODE, HS = "Pascanu et al. 2013", "their code (RNN.py)", "Hochreiter & Schmidhuber 1997"
# the expRNN's settings are its released code's defaults: its paper's experiments' section was not read (docstring)
EXP = ("The expRNN's released code, not its paper (Lezcano-Casado & Martínez-Rubio 2019; 1_copying.py, the "
       "copying task, run with --mode exprnn: the script's default mode is dtriv, of a later paper)")
PROTOCOLS = (
    ("success", f"{PASCANU} (§4.1.1): a run succeeds when under 1% of 10,000 fresh sequences are misclassified, "
                f"and {CODE} stops only at 0 errors; (§4.1.2): an adding sequence is wrong when its squared error "
                f"exceeds 0.04. {HS} (Table 7): a sequence is correct when |error| < 0.04, and the results are mean "
                f"counts of wrong test sequences, not success rates"),
    ("budget", f"{PASCANU} (§4.1.1): at most 5,000,000 updates of 20 sequences (100 million sequences). {HS} "
               f"(Table 7): 74,000 to 853,000 training sequences (means), until the training error is below 0.01 "
               f"and the last 2000 sequences were right. {EXP}: 4,000 updates of 128 sequences"),
    ("size", f"{PASCANU} (§4.1.1): 50 hidden units. {HS} (Table 7): 2 memory blocks of 2 cells, 93 weights in all. "
             f"{EXP}: 190 hidden units"),
    ("optimiser", f"{PASCANU} (§4.1.1): SGD, learning rate 0.01, no momentum, clipping at norm 1, Ω weight 4 "
                  f"(weight 2 in {CODE}). {HS} (Table 7): learning rate 0.5. {EXP}: RMSprop, learning rate 2e-4 and "
                  f"2e-5 for the skew-symmetric A (its README: a rate ten times smaller for the orthogonal parameters "
                  f"worked best), no clipping, the modReLU activation, A initialised block-diagonal with angles from "
                  f"U[−π, π] (“henaff”)"),
    ("seeds", f"{PASCANU} (§4.1.1): 5 runs per point (rates in steps of 20%). {HS} (Table 7): 10 trials per T"),
    ("lengths", f"{PASCANU}, {CODE}: each minibatch's length drawn from 50–200. {HS} (Table 7): lengths T to "
                f"T + T/10"),
    ("tasks", f"{PASCANU}, their code (addition.py, tempOrder.py): adding's values drawn from U[0, 1], target "
              f"(x1 + x2)/2, the first marker in the first 10% of the sequence and the second in [10%, 50%); "
              f"temporal order's two symbols in [10%, 20%) and [50%, 60%) of it. {HS} (§5.4): adding's values from "
              f"U[−1, 1], target 0.5 + (X1 + X2)/4, the first marker on one of the first 10 steps and the second on "
              f"one of the first T/2 − 1"),
    # why the GRU and expRNN arms have no published row: their papers' tasks, as far as they could be read
    ("GRU and expRNN", f"{CHO_EXPERIMENTS}: one task, English-to-French translation on the WMT'14 data, the GRU "
                       f"(the gated unit of their §2.3) in an RNN Encoder-Decoder of 1000 hidden units scoring a "
                       f"phrase-based system's phrase pairs, trained with Adadelta (ε = 10⁻⁶, ρ = 0.95) on 64 phrase "
                       f"pairs per update, its recurrent weights initialised orthogonal; no task of this study. "
                       f"Lezcano-Casado & Martínez-Rubio 2019: the experiments' section could not be read here and the "
                       f"abstract names no task; the released code's scripts are the copying task, pixel-by-pixel "
                       f"MNIST (permuted or not) and TIMIT, none adding or temporal order"),
)
