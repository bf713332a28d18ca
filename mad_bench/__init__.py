"""mad_bench: declarative architecture search and benchmarking for sequence models."""
from .lazy import exports

__version__ = "0.1.0"
__all__ = ["build_model", "list_primitives", "ArchitectureSpec", "SpecError", "dump_spec", "load_spec"]
__getattr__ = exports(__name__, {"build_model": ".compiler", "list_primitives": ".configs.registry",
                                 "ArchitectureSpec": ".configs.architecture", "SpecError": ".configs.errors",
                                 "dump_spec": ".spec.io", "load_spec": ".spec.io"})
