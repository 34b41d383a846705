"""Stage mixture @ cell of the equal-NFE study: ``stages/cell.py`` with the jump of a Gaussian mixture (``--start``
gmm_classes or gmm_kmeans, fitted by the mixtures stage, ``--model``), integrated in log-σ steps of
``mixtures.max_step``."""

from cell import main
from common import load_params, rule, validate
from hls.mixture import MIXTURES, GaussianMixture

RULES = {"mixtures.max_step": rule(lambda v, p: isinstance(v, (int, float)) and 0 < v <= 1, "must be in (0, 1]")}


def load(path, p):
    return GaussianMixture.load(path, max_step=p["mixtures"]["max_step"])


if __name__ == "__main__":
    validate(load_params(), RULES)
    main(dict.fromkeys(MIXTURES, load))
