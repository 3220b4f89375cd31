"""PLACEHOLDER until the model lands."""


class Model:  # noqa: D101
    pass
