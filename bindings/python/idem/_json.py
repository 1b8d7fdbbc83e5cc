"""How the package writes results: compact JSON, UTF-8, no NaN or Infinity
(which are not JSON, so a C++ service could not read them back)."""

import json

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

dumps = _encoder.encode
loads = json.loads
