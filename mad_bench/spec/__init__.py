"""Architecture spec files: YAML/JSON I/O and the JSON Schema. The spec model is
:class:`mad_bench.configs.architecture.ArchitectureSpec`; a bad file raises
:class:`mad_bench.configs.errors.SpecError`."""
from .io import dump_spec, load_spec, read_document, spec_json_schema, validate_document

__all__ = ["dump_spec", "load_spec", "read_document", "spec_json_schema", "validate_document"]
