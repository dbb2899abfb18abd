"""Exceptions raised by BSAFusionCore: each names the problem in its message."""


class BSAFusionError(Exception):
    """Base class of every error BSAFusionCore raises on purpose."""


class InputError(BSAFusionError, ValueError):
    """An input image, volume or option is unusable (shape, values, geometry, ...)."""


class WeightsError(BSAFusionError, ValueError):
    """A model file is missing, corrupt, or of a format we do not read."""


class Cancelled(BSAFusionError):
    """The caller asked the running job to stop; nothing was written."""
