"""Architecture specs: Pydantic models, YAML/JSON I/O, JSON Schema."""
from .architecture import ArchitectureSpec  # noqa: F401
from .errors import SpecError  # noqa: F401
from .io import dump_spec, load_spec, read_document, spec_json_schema, validate_document  # noqa: F401
