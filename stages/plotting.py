"""How the stages that draw figures save them: one PNG format, no timestamp, written atomically."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common import atomic_path  # noqa: E402


def save_figure(fig, path) -> None:
    """A matplotlib figure as a PNG (identical figures give identical bytes), atomically; closes it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
