"""Architecture specs: Pydantic models, YAML/JSON I/O, JSON Schema."""
from ..lazy import exports
from .errors import SpecError  # noqa: F401  (light: pydantic only)

__all__ = ["ArchitectureSpec", "SpecError", "dump_spec", "load_spec", "read_document",
           "spec_json_schema", "validate_document"]
__getattr__ = exports(__name__, {"ArchitectureSpec": ".architecture",
                                 **{n: ".io" for n in ("dump_spec", "load_spec", "read_document",
                                                       "spec_json_schema", "validate_document")}})
