"""Objects that import but are no adapter: not a class, an ``__init__`` that raises, members missing."""

NOT_A_CLASS = 42


class RaisingInitAdapter:
    """Every member, but instantiating it fails (e.g. no device found)."""

    name = "raising-init"

    def __init__(self):
        raise RuntimeError("no device\nfound on this machine")

    def available(self):
        return None

    def devices(self):
        return ["cpu"]

    def supports(self, case):
        return None

    def run(self, case, device):
        return []


class MemberlessAdapter:
    """A class with none of the five required members."""


class NamelessAdapter:
    """Four callables, but ``name`` is empty and ``run`` is no method."""

    name = ""
    run = "not callable"

    def available(self):
        return None

    def devices(self):
        return ["cpu"]

    def supports(self, case):
        return None
