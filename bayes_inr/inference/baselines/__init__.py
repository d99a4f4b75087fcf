"""The classical reconstructions (FBP, CGLS, EM, SART, SIRT, TV) the Bayesian fits are
compared with."""
