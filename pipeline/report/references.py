"""The works the report cites: each with the short form its text cites it by and its full entry, which the report's
References section lists (in citation order's alphabet: by first author). `cite(key)` is the in-text citation, a
link to its entry in the HTML; a key not listed here is an error, so no citation points nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    key: str  # the anchor of its entry: ref-<key>
    short: str  # how the text cites it: "Bengio, Simard & Frasconi 1994"
    entry: str  # the full entry


REFERENCES = (
    Reference("arjovsky2016", "Arjovsky, Shah & Bengio 2016",
              "Arjovsky, M., Shah, A., & Bengio, Y. (2016). Unitary evolution recurrent neural networks. Proceedings "
              "of the 33rd International Conference on Machine Learning (ICML), PMLR 48, 1120–1128. arXiv:1511.06464."),
    Reference("bengio1994", "Bengio, Simard & Frasconi 1994",
              "Bengio, Y., Simard, P., & Frasconi, P. (1994). Learning long-term dependencies with gradient descent is "
              "difficult. IEEE Transactions on Neural Networks, 5(2), 157–166."),
    Reference("chen2018", "Chen, Pennington & Schoenholz 2018",
              "Chen, M., Pennington, J., & Schoenholz, S. S. (2018). Dynamical isometry and a mean field theory of "
              "RNNs: Gating enables signal propagation in recurrent neural networks. Proceedings of the 35th "
              "International Conference on Machine Learning (ICML), PMLR 80, 873–882. arXiv:1806.05394."),
    Reference("cho2014", "Cho et al. 2014",
              "Cho, K., van Merriënboer, B., Gulcehre, C., Bahdanau, D., Bougares, F., Schwenk, H., & Bengio, Y. "
              "(2014). Learning phrase representations using RNN encoder-decoder for statistical machine translation. "
              "Proceedings of the 2014 Conference on Empirical Methods in Natural Language Processing (EMNLP), "
              "1724–1734. arXiv:1406.1078."),
    Reference("engelken2020", "Engelken, Wolf & Abbott 2020",
              "Engelken, R., Wolf, F., & Abbott, L. F. (2020). Lyapunov spectra of chaotic recurrent neural networks. "
              "arXiv:2006.02427."),
    Reference("hochreiter1997", "Hochreiter & Schmidhuber 1997",
              "Hochreiter, S., & Schmidhuber, J. (1997). Long short-term memory. Neural Computation, 9(8), "
              "1735–1780."),
    Reference("karpathy2015", "Karpathy 2015",
              "Karpathy, A. (2015). min-char-rnn.py: minimal character-level vanilla RNN model. GitHub gist "
              "karpathy/d4dee566867f8291f086 (its model and settings; this study's text runs read their own corpus, "
              "named in the text section)."),
    Reference("le2015", "Le, Jaitly & Hinton 2015",
              "Le, Q. V., Jaitly, N., & Hinton, G. E. (2015). A simple way to initialize recurrent networks of "
              "rectified linear units. arXiv:1504.00941."),
    Reference("lezcano2019", "Lezcano-Casado & Martínez-Rubio 2019",
              "Lezcano-Casado, M., & Martínez-Rubio, D. (2019). Cheap orthogonal constraints in neural networks: A "
              "simple parametrization of the orthogonal and unitary group. Proceedings of the 36th International "
              "Conference on Machine Learning (ICML), PMLR 97, 3794–3803. arXiv:1901.08428. Code: "
              "github.com/Lezcano/expRNN."),
    Reference("pascanu2013", "Pascanu, Mikolov & Bengio 2013",
              "Pascanu, R., Mikolov, T., & Bengio, Y. (2013). On the difficulty of training recurrent neural "
              "networks. Proceedings of the 30th International Conference on Machine Learning (ICML), PMLR 28(3), "
              "1310–1318. arXiv:1211.5063. Code: github.com/pascanur/trainingRNNs."),
    Reference("poole2016", "Poole et al. 2016",
              "Poole, B., Lahiri, S., Raghu, M., Sohl-Dickstein, J., & Ganguli, S. (2016). Exponential expressivity "
              "in deep neural networks through transient chaos. Advances in Neural Information Processing Systems 29 "
              "(NeurIPS), 3360–3368."),
    Reference("saxe2014", "Saxe, McClelland & Ganguli 2014",
              "Saxe, A. M., McClelland, J. L., & Ganguli, S. (2014). Exact solutions to the nonlinear dynamics of "
              "learning in deep linear neural networks. International Conference on Learning Representations "
              "(ICLR). arXiv:1312.6120."),
    Reference("wilson1927", "Wilson 1927",
              "Wilson, E. B. (1927). Probable inference, the law of succession, and statistical inference. Journal "
              "of the American Statistical Association, 22(158), 209–212."),
)
BY_KEY = {r.key: r for r in REFERENCES}


def reference(key: str) -> Reference:
    if key not in BY_KEY:
        raise KeyError(f"no reference {key!r} (listed: {', '.join(BY_KEY)})")
    return BY_KEY[key]
