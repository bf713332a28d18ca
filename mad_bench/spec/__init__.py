"""Architecture spec files: YAML/JSON I/O, one error type, the JSON Schema. The spec model
itself is :class:`mad_bench.configs.architecture.ArchitectureSpec`."""
from .errors import SpecError
from .io import dump_spec, load_spec, read_document, spec_json_schema, validate_document

__all__ = ["SpecError", "dump_spec", "load_spec", "read_document", "spec_json_schema",
           "validate_document"]
