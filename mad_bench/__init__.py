"""mad_bench: declarative architecture search and benchmarking for sequence models."""
from .compiler import build_model  # noqa: F401
from .primitives import list_primitives  # noqa: F401
from .spec import ArchitectureSpec, SpecError, dump_spec, load_spec  # noqa: F401

__version__ = "0.1.0"
