"""Inference methods: each turns a :class:`~bayes_inr.model.CTModel` into image draws."""
