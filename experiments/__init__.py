"""Experiments that check the paper's claims; run `python -m experiments list`."""
