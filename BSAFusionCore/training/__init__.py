"""Training BSAFusion on aligned pairs with synthetic deformations (``bsafusion train``)."""

from ..deformation import invert_displacement, random_deformation, random_displacement

__all__ = ["invert_displacement", "random_deformation", "random_displacement"]
