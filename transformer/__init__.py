"""Transformer: rendition jobs off the upload path (idempotent, retried, dead-lettered),
on a job stream in Redis (``trenchcoat.rendition_jobs``); image sizes rendered with one
decode each (``transformer/images.py``). Video ladders and resize-on-read are not built
yet. Contract: ``proto/trenchcoat/v1/transformer.proto``.
"""
