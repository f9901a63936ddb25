"""Injection: priors, host selection (IM1, IM2) and inject()."""

from lenscal.injection.hosts import host_pool, host_psf_fwhm, host_shape
from lenscal.injection.inject import InjectionResult, inject
from lenscal.injection.priors import PRIORS, InjectionPrior, get_prior, injection_rng, sample_params

__all__ = [
    "PRIORS",
    "InjectionPrior",
    "InjectionResult",
    "get_prior",
    "host_pool",
    "host_psf_fwhm",
    "host_shape",
    "inject",
    "injection_rng",
    "sample_params",
]
