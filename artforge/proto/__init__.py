"""Generated protobuf / gRPC stubs for artforge's two gRPC APIs (sources in proto/).

    from artforge.proto.inference import grpc_service_pb2, grpc_service_pb2_grpc, model_config_pb2
    from artforge.proto.artforge.v1 import image_service_pb2, image_service_pb2_grpc

Everything below this package except this file is written by
`python scripts/gen_proto.py`; edit proto/ and rerun it, never the stubs.
tests/test_proto.py fails when they no longer match proto/.

The stubs differ from plain protoc output in two ways, for these reasons:

- Imports. protoc imports one stub from another by its path under the proto
  root (`from inference import model_config_pb2`). Putting this folder on
  sys.path would make those resolve, but proto/artforge/v1 would then be a
  second top-level `artforge` package clashing with this one, so the generator
  rewrites the imports to `from artforge.proto.inference import ...` instead.

- Descriptor pool. The KServe v2 protocol lives in the proto package
  `inference`, and tritonclient (like kserve and Triton's python backend)
  registers the same `inference.*` names in protobuf's default descriptor
  pool. Protobuf refuses a second file defining an existing name
  ("duplicate symbol 'inference.ServerLiveRequest'"), so a process could not
  load both artforge's server stubs and tritonclient, which the tests and any
  app embedding a Triton client must. Our stubs therefore register in POOL, a
  private pool. Messages, serialization and gRPC are unaffected; only lookups
  by name go through POOL: pass `pool=POOL` to
  grpc_reflection.v1alpha.reflection.enable_server_reflection, and use the
  message classes rather than symbol_database.Default(). A .proto here must
  not import google/protobuf/*.proto (those live in the default pool only).
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
