"""Router: the front door. MediaService over gRPC: uploads, and reads, deletes and stats
by media_id; media metadata in PostgreSQL. Photo URLs are served by the caches, never here.
Contract: ``proto/trenchcoat/v1/router.proto``.
"""
