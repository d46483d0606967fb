"""l2loss: the squared L2 loss and its JVP and VJP on every array API backend.

.. math::

    L = \\tfrac12 \\lVert y - y_{ref} \\rVert_2^2, \\qquad
    \\dot L = (y - y_{ref})^T (\\dot y - \\dot y_{ref}), \\qquad
    \\bar y = \\bar L (y - y_{ref}) = -\\bar y_{ref}.
"""

from ._api import l2_loss, l2_loss_grad, l2_loss_jvp, l2_loss_vjp

__all__ = ["__version__", "l2_loss", "l2_loss_grad", "l2_loss_jvp", "l2_loss_vjp"]
__version__ = "0.1.0"
