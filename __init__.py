"""dynheads: dynamic retrieval heads benchmark suite (Lin et al., "Retrieval Heads are Dynamic")."""

__version__ = "0.1.0"
