"""Router: the front door. MediaService (upload, read, delete, stat) over gRPC and the
photo-URL HTTP gateway; hides hot vs warm storage; media metadata in PostgreSQL.
Contract: ``proto/trenchcoat/v1/router.proto``.
"""
