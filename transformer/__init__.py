"""Transformer: resize and crop on read, and rendition / video transcode jobs off the
request path (idempotent, retried, dead-lettered), on job streams in Redis.
Contract: ``proto/trenchcoat/v1/transformer.proto``. Not built yet.
"""
