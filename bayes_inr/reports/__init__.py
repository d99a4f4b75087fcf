"""Reports of saved runs: scores, figures and MCMC diagnostics on one page (Markdown, HTML)."""
