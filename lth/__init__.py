"""lth: lottery-ticket experiments (Frankle & Carbin; Zhou et al.) as a library, a CLI and a DVC pipeline.

The Python API (lth.api), imported on first use so `import lth` and `python -m lth --help` stay instant:

    lth.find_ticket(model, dataset, *, rounds, out, **settings) -> round records
    lth.load_run(path) -> Results (pandas frames of the records, masks, weights, networks)
    lth.register_model(name, factory), lth.register_dataset(name, arrays)
"""

__version__ = "0.1.0"

_API = ("Results", "find_ticket", "load_run", "register_dataset", "register_model")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from lth import api

        return getattr(api, name)
    raise AttributeError(f"module 'lth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
