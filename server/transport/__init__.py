"""gRPC transport: the only place protobuf types exist; thin translation over server.core."""
