"""Generated gRPC stubs (by scripts/gen_protos.py from protos/; do not edit).

All messages live in :data:`POOL`, a private descriptor pool, so these stubs can share a
process with ``tritonclient`` (which registers the same ``inference.*`` names in
protobuf's default pool).
"""

from google.protobuf import descriptor_pool as _descriptor_pool

POOL = _descriptor_pool.DescriptorPool()

__all__ = ["POOL"]
