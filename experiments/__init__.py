"""Experiments that check the paper's claims; run `python -m experiments list`.

claims.py      the claims and the scales: what each compares, as train.py flags
runner.py      running a claim: its train.py runs over seeds, a summary, a verdict
results_md.py  docs/RESULTS.md, from what experiments/results/ holds
ensemble.py    averaging trained networks (the paper's Section 6), weights-only copies
__main__.py    the command line
"""
