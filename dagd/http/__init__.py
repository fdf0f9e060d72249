"""The HTTP API (/api/v1, Dagu's shapes) served inside dagd's trio loop by hypercorn."""
