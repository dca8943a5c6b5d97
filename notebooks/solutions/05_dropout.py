"""Reference solutions of notebook 05 (dropout)."""


def my_dropout_paper(x, keep, p, train):
    """The paper's form: drop at training time, multiply by 1 - p at test time."""
    return x * keep if train else x * (1 - p)


def my_dropout_inverted(x, keep, p, train):
    """Inverted dropout: drop and divide by 1 - p at training time, nothing at test time."""
    return x * keep / (1 - p) if train else x
