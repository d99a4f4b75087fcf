"""The Bayesian model: the INR (and the pixel grid), priors, the Pyro model of a
sinogram, and the catalogue of named configurations."""
